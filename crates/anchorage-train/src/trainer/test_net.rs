//! The trainer's unit-test module (`zero.rs`, `master.rs`): five linear layers of uneven sizes on
//! flex under autodiff, and each parameter as the tests compare it.

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

pub(super) type AD = Autodiff<Flex>;

#[derive(Module, Debug)]
pub(super) struct Net<B: Backend> {
    pub(super) layers: Vec<Linear<B>>,
}

/// An f32 net, its values drawn now (burn initialises parameters lazily), so clones share them.
pub(super) fn net() -> Net<AD> {
    let device = Default::default();
    let net = Net { layers: [(4, 3), (8, 2), (2, 2), (5, 5), (3, 1)].iter().map(|&(i, o)| LinearConfig::new(i, o).init::<AD>(&device)).collect() };
    values(&net);
    net
}

/// One parameter: its id, dtype, whether it trains, and its values in f32.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Value {
    pub(super) id: ParamId,
    pub(super) dtype: DType,
    pub(super) trains: bool,
    pub(super) values: Vec<f32>,
}

/// Every parameter of `m`, in visiting order.
pub(super) fn values(m: &Net<AD>) -> Vec<Value> {
    struct Collect(Vec<Value>);
    impl ModuleVisitor<AD> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<AD, D>>) {
            let v = p.val();
            let (dtype, trains) = (v.dtype(), v.is_require_grad());
            self.0.push(Value { id: p.id, dtype, trains, values: v.into_data().convert::<f32>().to_vec::<f32>().unwrap() });
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}
