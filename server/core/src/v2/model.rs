//! The two models of the repository, as plain values (what they are called and answer is in
//! the parent module, which knows the server).

/// A model of the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// `{MODEL_NAME}`: the network's own FP32 tensors.
    Tensor,
    /// `{MODEL_NAME}_image`: encoded image files in, logits out.
    Image,
}

impl Model {
    /// Both models, in the order the repository lists them.
    pub const ALL: [Model; 2] = [Model::Tensor, Model::Image];
}
