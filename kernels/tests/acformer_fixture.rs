//! Held-out, tie-free anchor cases from AcFormer's host loop run in PyTorch
//! (`tests/fixtures/kernels/gen_anchor_fixture.py`): the reference twin on flex always, and the
//! CubeCL kernel on wgpu with `--features wgpu`, must return the same indices.

use anchorage_kernels::anchor;
use burn::backend::Flex;
use burn::tensor::{backend::Backend, Tensor, TensorData};

struct Case {
    shape: [usize; 3],
    count: usize,
    attention: Vec<f32>,
    indices: Vec<i64>,
}

fn cases() -> Vec<Case> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/kernels");
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(format!("{dir}/anchors_acformer.json")).unwrap()).unwrap();
    let blob = std::fs::read(format!("{dir}/anchors_acformer.bin")).unwrap();
    let floats: Vec<f32> = blob.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let mut offset = 0;
    let cases: Vec<Case> = meta["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let dim = |k: &str| c[k].as_u64().unwrap() as usize;
            let shape = [dim("batch"), dim("heads"), dim("tokens")];
            let n = shape.iter().product::<usize>();
            let attention = floats[offset..offset + n].to_vec();
            offset += n;
            let indices = c["indices"].as_array().unwrap().iter().flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_i64().unwrap())).collect();
            Case { shape, count: dim("count"), attention, indices }
        })
        .collect();
    assert_eq!(offset, floats.len(), "fixture blob size");
    assert_eq!(cases.len(), 4);
    cases
}

fn check<B: Backend>(select: impl Fn(Tensor<B, 3>, usize) -> Vec<i64>) {
    for case in cases() {
        let att = Tensor::<B, 3>::from_data(TensorData::new(case.attention.clone(), case.shape), &Default::default());
        assert_eq!(select(att, case.count), case.indices, "shape {:?} count {}", case.shape, case.count);
    }
}

#[test]
fn reference_twin_matches_acformer_host_loop_in_pytorch() {
    check::<Flex>(|att, count| anchor::reference::select_anchors(att, count).unwrap().into_data().convert::<i64>().to_vec().unwrap());
}

#[cfg(feature = "wgpu")]
use crate::support;

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_kernel_matches_acformer_host_loop_in_pytorch() {
    if !support::wgpu_available() {
        return;
    }
    use burn::backend::Wgpu;
    let probe = Tensor::<Wgpu, 1>::zeros([1], &Default::default());
    assert!(anchorage_kernels::runs_kernels(&probe));
    check::<Wgpu>(|att, count| anchorage_kernels::select_anchors(att, count).unwrap().into_data().convert::<i64>().to_vec().unwrap());
}
