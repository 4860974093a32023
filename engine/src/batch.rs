//! Batch buffers: the two input forms every engine accepts, one kind per batch: preprocessed
//! images (u8 HWC 224×224×3, normalised by the backend) or client-made tensors (f32 NCHW
//! 3×224×224, little-endian, already normalised); and the normalisation backends apply.

/// Side of the square network input.
pub const IMAGE_SIDE: usize = 224;
/// Colour channels of the network input (RGB).
pub const IMAGE_CHANNELS: usize = 3;
/// Bytes of one preprocessed image (u8, HWC).
pub const IMAGE_BYTES: usize = IMAGE_SIDE * IMAGE_SIDE * IMAGE_CHANNELS;
/// Bytes of one input tensor (f32 little-endian, CHW).
pub const TENSOR_BYTES: usize = IMAGE_BYTES * 4;
/// Bytes a batch buffer reserves per slot: room for either kind.
pub const SLOT_BYTES: usize = TENSOR_BYTES;

/// What the slots of a batch hold. A batch is all of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InputKind {
    /// u8 HWC 224×224×3 preprocessed images; the backend normalises them.
    #[default]
    Image,
    /// f32 little-endian NCHW 3×224×224 tensors, already normalised: the model's own input.
    Tensor,
}

impl InputKind {
    /// Bytes of one slot's input.
    pub const fn bytes(self) -> usize {
        match self {
            InputKind::Image => IMAGE_BYTES,
            InputKind::Tensor => TENSOR_BYTES,
        }
    }
}

/// Host memory a batch lives in. Plain `Vec<u8>` on the CPU; a GPU backend supplies pinned memory.
pub trait HostMemory: Send {
    /// The whole allocation.
    fn bytes(&self) -> &[u8];
    /// The whole allocation, writable.
    fn bytes_mut(&mut self) -> &mut [u8];
}

impl HostMemory for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// Up to `capacity` inputs of one [`InputKind`], contiguous, reused from batch to batch.
pub struct BatchBuffer {
    memory: Box<dyn HostMemory>,
    capacity: usize,
    len: usize,
    kind: InputKind,
}

impl std::fmt::Debug for BatchBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuffer")
            .field("capacity", &self.capacity)
            .field("len", &self.len)
            .field("kind", &self.kind)
            .finish()
    }
}

impl BatchBuffer {
    /// A heap-allocated buffer for `capacity` inputs of either kind.
    pub fn new(capacity: usize) -> Self {
        Self::with_memory(Box::new(vec![0u8; capacity * SLOT_BYTES]), capacity)
    }

    /// Wraps backend-provided memory, which must hold at least `capacity` slots.
    ///
    /// # Panics
    /// If the memory is smaller than `capacity * SLOT_BYTES`: a backend bug, not an input error.
    pub fn with_memory(memory: Box<dyn HostMemory>, capacity: usize) -> Self {
        assert!(
            memory.bytes().len() >= capacity * SLOT_BYTES,
            "batch memory too small"
        );
        Self {
            memory,
            capacity,
            len: 0,
            kind: InputKind::Image,
        }
    }

    /// What the slots hold.
    pub fn kind(&self) -> InputKind {
        self.kind
    }

    /// Empties the batch and makes it a batch of `kind`.
    pub fn reset(&mut self, kind: InputKind) {
        self.len = 0;
        self.kind = kind;
    }

    /// Images in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no image has been added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most images the buffer holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Empties the batch (the memory is kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Claims the next slot and returns it for the caller to write one input of the batch's
    /// kind into. `None` when the buffer is full.
    pub fn next_slot(&mut self) -> Option<&mut [u8]> {
        if self.len == self.capacity {
            return None;
        }
        let size = self.kind.bytes();
        let start = self.len * size;
        self.len += 1;
        Some(&mut self.memory.bytes_mut()[start..start + size])
    }

    /// Copies one input into the next slot; `false` when full or not the size of the kind.
    pub fn push(&mut self, image: &[u8]) -> bool {
        if image.len() != self.kind.bytes() {
            return false;
        }
        match self.next_slot() {
            Some(slot) => {
                slot.copy_from_slice(image);
                true
            }
            None => false,
        }
    }

    /// The filled part: `len()` inputs back to back.
    pub fn images(&self) -> &[u8] {
        &self.memory.bytes()[..self.len * self.kind.bytes()]
    }

    /// Input `i` of the batch.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.kind.bytes();
        &self.images()[i * size..(i + 1) * size]
    }
}

/// Writes the f32 little-endian tensors of a [`InputKind::Tensor`] batch into `out` (resized).
pub fn tensors_to_f32(batch: &BatchBuffer, out: &mut Vec<f32>) {
    out.resize(batch.images().len() / 4, 0.0);
    le_f32(batch.images(), out);
}

/// Little-endian f32 `bytes` into `out`.
fn le_f32(bytes: &[u8], out: &mut [f32]) {
    for (v, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// Per-channel normalisation `(v / 255 - mean) / std`, applied by the backend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Channel means in [0, 1] units (RGB).
    pub mean: [f32; 3],
    /// Channel standard deviations in [0, 1] units (RGB).
    pub std: [f32; 3],
}

impl Normalization {
    /// Writes the images of `batch` as normalised f32 NCHW into `out` (resized to fit).
    pub fn to_nchw(&self, batch: &BatchBuffer, out: &mut Vec<f32>) {
        out.resize(batch.len() * IMAGE_CHANNELS * IMAGE_SIDE * IMAGE_SIDE, 0.0);
        self.write_batch(batch, out);
    }

    /// Writes the inputs of `batch` as f32 NCHW into `out` (`batch.len()` × 3 × H × W values):
    /// images normalised, tensors as sent (little-endian f32).
    pub fn write_batch(&self, batch: &BatchBuffer, out: &mut [f32]) {
        match batch.kind() {
            InputKind::Image => {
                let per = IMAGE_CHANNELS * IMAGE_SIDE * IMAGE_SIDE;
                for (i, dst) in out.chunks_exact_mut(per).enumerate() {
                    self.image_to_chw(batch.image(i), dst);
                }
            }
            InputKind::Tensor => le_f32(batch.images(), out),
        }
    }

    /// Normalises one u8 HWC image into f32 CHW (`dst.len() == 3 × H × W`).
    pub fn image_to_chw(&self, hwc: &[u8], dst: &mut [f32]) {
        let plane = dst.len() / IMAGE_CHANNELS;
        let (r, rest) = dst.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * self.std[c]));
        let bias: [f32; 3] = std::array::from_fn(|c| -self.mean[c] / self.std[c]);
        for (((px, r), g), b) in hwc.chunks_exact(3).zip(r).zip(g).zip(b) {
            *r = f32::from(px[0]) * scale[0] + bias[0];
            *g = f32::from(px[1]) * scale[1] + bias[1];
            *b = f32::from(px[2]) * scale[2] + bias[2];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGENET: Normalization = Normalization {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };

    #[test]
    fn push_fills_slots_in_order_and_stops_at_capacity() {
        let mut b = BatchBuffer::new(2);
        assert!(b.push(&vec![1u8; IMAGE_BYTES]));
        assert!(b.push(&vec![2u8; IMAGE_BYTES]));
        assert!(!b.push(&vec![3u8; IMAGE_BYTES]));
        assert!(!b.push(&[0u8; 10]));
        assert_eq!(b.len(), 2);
        assert!(b.image(0).iter().all(|&v| v == 1));
        assert!(b.image(1).iter().all(|&v| v == 2));
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.images().len(), 0);
    }

    #[test]
    fn a_tensor_batch_takes_tensor_sized_slots_only() {
        let mut b = BatchBuffer::new(2);
        b.reset(InputKind::Tensor);
        assert!(!b.push(&vec![1u8; IMAGE_BYTES]), "an image is not a tensor");
        let t: Vec<u8> = (0..IMAGE_BYTES)
            .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
            .collect();
        assert!(b.push(&t));
        assert!(b.push(&t));
        assert!(!b.push(&t), "full");
        assert_eq!(b.image(1).len(), TENSOR_BYTES);
        let mut out = Vec::new();
        tensors_to_f32(&b, &mut out);
        assert_eq!(out.len(), 2 * IMAGE_BYTES);
        assert_eq!((out[3], out[IMAGE_BYTES + 7]), (1.5, 3.5));
        b.reset(InputKind::Image);
        assert!(b.push(&vec![1u8; IMAGE_BYTES]));
        assert_eq!(b.images().len(), IMAGE_BYTES);
    }

    #[test]
    fn normalisation_matches_the_formula_and_layout() {
        let mut b = BatchBuffer::new(1);
        let slot = b.next_slot().unwrap();
        for (i, v) in slot.iter_mut().enumerate() {
            *v = (i * 7 % 256) as u8;
        }
        let mut out = Vec::new();
        IMAGENET.to_nchw(&b, &mut out);
        assert_eq!(out.len(), IMAGE_BYTES);
        let plane = IMAGE_SIDE * IMAGE_SIDE;
        for p in [0usize, 1, 500, plane - 1] {
            for c in 0..3 {
                let v = f32::from(b.image(0)[p * 3 + c]);
                let want = (v / 255.0 - IMAGENET.mean[c]) / IMAGENET.std[c];
                assert!((out[c * plane + p] - want).abs() < 1e-5, "p={p} c={c}");
            }
        }
    }
}
