//! Top-k anchor selection and gather ops. Each op has a pure tensor-op reference twin; the public
//! function dispatches to a CubeCL kernel on cuda/wgpu and to the reference elsewhere.
