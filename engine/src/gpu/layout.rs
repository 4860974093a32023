//! Pure layout arithmetic shared by every device: the weight arena's 256-byte-aligned regions,
//! NHWC tensor descriptors (dims and strides as cuDNN takes them), and convolution geometry.
//! Nothing here touches a device, so all of it is unit-tested in CI.

/// Alignment of every region of the weight arena and of every device buffer (cuDNN and cuBLASLt
/// want at least 16 bytes; 256 keeps every tensor on its own cache-line group).
pub const ALIGN: usize = 256;

/// A byte range of the weight arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Start, a multiple of [`ALIGN`].
    pub offset: usize,
    /// Length in bytes.
    pub bytes: usize,
}

/// Builds the weight arena: one host byte vector, uploaded once, every tensor at an aligned
/// offset.
#[derive(Debug, Default)]
pub struct Arena {
    bytes: Vec<u8>,
}

impl Arena {
    /// Appends `data` at the next aligned offset and returns where it went.
    pub fn push(&mut self, data: &[u8]) -> Region {
        let offset = self.bytes.len().next_multiple_of(ALIGN);
        self.bytes.resize(offset, 0);
        self.bytes.extend_from_slice(data);
        Region {
            offset,
            bytes: data.len(),
        }
    }

    /// Appends fp16 values (little-endian bits).
    pub fn push_f16(&mut self, values: impl IntoIterator<Item = half::f16>) -> Region {
        let data: Vec<u8> = values
            .into_iter()
            .flat_map(|v| v.to_bits().to_le_bytes())
            .collect();
        self.push(&data)
    }

    /// Appends fp32 values (little-endian).
    pub fn push_f32(&mut self, values: &[f32]) -> Region {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push(&data)
    }

    /// The finished arena, padded to a multiple of [`ALIGN`].
    pub fn finish(mut self) -> Vec<u8> {
        let len = self.bytes.len().next_multiple_of(ALIGN);
        self.bytes.resize(len, 0);
        self.bytes
    }
}

/// A 4-d tensor as cuDNN describes it: dims in NCHW order and the strides of an NHWC layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorDesc {
    /// `[n, c, h, w]`.
    pub dims: [usize; 4],
    /// Element strides for `[n, c, h, w]` of the NHWC layout: `[h·w·c, 1, w·c, c]`.
    pub strides: [usize; 4],
}

/// The descriptor of an NHWC tensor of `n` images of `c × h × w`.
pub fn nhwc(n: usize, c: usize, h: usize, w: usize) -> TensorDesc {
    TensorDesc {
        dims: [n, c, h, w],
        strides: [h * w * c, 1, w * c, c],
    }
}

/// Everything about a convolution's shapes, per image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeom {
    /// Input channels (padded).
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub k: usize,
    /// Filter height.
    pub r: usize,
    /// Filter width.
    pub s: usize,
    /// Stride (both directions).
    pub stride: usize,
    /// Zero padding (every side).
    pub pad: usize,
}

impl ConvGeom {
    /// Output height.
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.r) / self.stride + 1
    }

    /// Output width.
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.s) / self.stride + 1
    }

    /// The input descriptor for a batch of `n`.
    pub fn x_desc(&self, n: usize) -> TensorDesc {
        nhwc(n, self.c, self.h, self.w)
    }

    /// The output (and residual) descriptor for a batch of `n`.
    pub fn y_desc(&self, n: usize) -> TensorDesc {
        nhwc(n, self.k, self.oh(), self.ow())
    }

    /// Filter dims `[k, c, r, s]` (cuDNN's order; the NHWC filter format stores them KRSC).
    pub fn filter_dims(&self) -> [usize; 4] {
        [self.k, self.c, self.r, self.s]
    }

    /// Multiply-accumulates per image.
    pub fn macs(&self) -> usize {
        self.k * self.oh() * self.ow() * self.c * self.r * self.s
    }
}

/// Max pooling geometry, per image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    /// Channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding (padded positions are ignored, as PyTorch's max pool does).
    pub pad: usize,
}

impl PoolGeom {
    /// Output height.
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.kernel) / self.stride + 1
    }

    /// Output width.
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.kernel) / self.stride + 1
    }
}

/// Little-endian fp16 (`width` 2) or fp32 (`width` 4) device values as f32 (fp16 widens
/// exactly): how the twin and the step-by-step checks read device bytes.
pub fn widen(bytes: &[u8], width: usize) -> Vec<f32> {
    match width {
        2 => bytes
            .chunks_exact(2)
            .map(|h| half::f16::from_bits(u16::from_le_bytes([h[0], h[1]])).to_f32())
            .collect(),
        4 => bytes
            .chunks_exact(4)
            .map(|v| f32::from_le_bytes([v[0], v[1], v[2], v[3]]))
            .collect(),
        _ => panic!("values are 2 or 4 bytes wide, not {width}"),
    }
}

/// The largest of the workspace sizes the chosen algorithms need (one shared workspace).
pub fn shared_workspace(sizes: impl IntoIterator<Item = usize>) -> usize {
    sizes.into_iter().max().unwrap_or(0).next_multiple_of(ALIGN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_regions_are_aligned_disjoint_and_hold_their_bytes() {
        let mut a = Arena::default();
        let r1 = a.push(&[1, 2, 3]);
        let r2 = a.push_f32(&[1.5, -2.0]);
        let r3 = a.push_f16([half::f16::from_f32(0.5)]);
        assert_eq!(
            r1,
            Region {
                offset: 0,
                bytes: 3
            }
        );
        assert_eq!(
            r2,
            Region {
                offset: 256,
                bytes: 8
            }
        );
        assert_eq!(
            r3,
            Region {
                offset: 512,
                bytes: 2
            }
        );
        let bytes = a.finish();
        assert_eq!(bytes.len(), 768);
        assert_eq!(&bytes[0..4], &[1, 2, 3, 0]);
        assert_eq!(&bytes[256..260], &1.5f32.to_le_bytes());
        assert_eq!(
            &bytes[512..514],
            &half::f16::from_f32(0.5).to_bits().to_le_bytes()
        );
    }

    #[test]
    fn nhwc_strides_walk_channels_fastest() {
        let d = nhwc(4, 8, 224, 224);
        assert_eq!(d.dims, [4, 8, 224, 224]);
        assert_eq!(d.strides, [224 * 224 * 8, 1, 224 * 8, 8]);
        // Element (n=1, c=2, h=3, w=5) of NHWC sits at ((1·H + 3)·W + 5)·C + 2.
        let at: usize = [1, 2, 3, 5].iter().zip(d.strides).map(|(i, s)| i * s).sum();
        assert_eq!(at, ((224 + 3) * 224 + 5) * 8 + 2);
    }

    #[test]
    fn conv_geometry_of_resnet_layers() {
        let stem = ConvGeom {
            c: 8,
            h: 224,
            w: 224,
            k: 64,
            r: 7,
            s: 7,
            stride: 2,
            pad: 3,
        };
        assert_eq!((stem.oh(), stem.ow()), (112, 112));
        assert_eq!(stem.y_desc(2).dims, [2, 64, 112, 112]);
        assert_eq!(stem.filter_dims(), [64, 8, 7, 7]);
        let down = ConvGeom {
            c: 256,
            h: 56,
            w: 56,
            k: 512,
            r: 1,
            s: 1,
            stride: 2,
            pad: 0,
        };
        assert_eq!((down.oh(), down.ow()), (28, 28));
        assert_eq!(down.macs(), 512 * 28 * 28 * 256);
        let pool = PoolGeom {
            c: 64,
            h: 112,
            w: 112,
            kernel: 3,
            stride: 2,
            pad: 1,
        };
        assert_eq!((pool.oh(), pool.ow()), (56, 56));
        assert_eq!(shared_workspace([0, 1000, 300]), 1024);
        assert_eq!(shared_workspace([]), 0);
    }
}
