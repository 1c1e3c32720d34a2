//! Compiles the libjpeg driver (src/image/jpeg_shim.c) against the headers of the libjpeg that
//! mozjpeg-sys builds (its `links = "jpeg"` hands them over as `DEP_JPEG_INCLUDE`).

fn main() {
    println!("cargo:rerun-if-changed=src/image/jpeg_shim.c");
    let include = std::env::var_os("DEP_JPEG_INCLUDE")
        .expect("mozjpeg-sys exports its include directories as DEP_JPEG_INCLUDE");
    let mut build = cc::Build::new();
    for dir in std::env::split_paths(&include) {
        build.include(dir);
    }
    build.file("src/image/jpeg_shim.c").warnings(true).compile("anchorage_jpeg_shim");
}
