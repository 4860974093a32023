//! The execution plan: the shape of every value, one step per operation (a convolution step is
//! the whole act(conv + bias + residual)), activation buffers reused as soon as their last
//! reader has run, and the batch-size buckets a batch is rounded up to (one CUDA graph each).

use super::fold::padded_channels;
use super::network::{Network, Op};

/// Batch sizes that get their own captured graph; a batch runs in the smallest that fits.
pub const BUCKETS: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// The buckets used for a largest batch of `max`: the powers of two below it, and `max`.
pub fn buckets_up_to(max: usize) -> Vec<usize> {
    let mut b: Vec<usize> = BUCKETS.iter().copied().filter(|&x| x < max).collect();
    if max > 0 {
        b.push(max);
    }
    b
}

/// The bucket a batch of `n` runs in (`None` for 0 or more than the largest).
pub fn bucket(n: usize, buckets: &[usize]) -> Option<usize> {
    (n > 0)
        .then(|| buckets.iter().copied().find(|&b| b >= n))
        .flatten()
}

/// Per-image shape of a value, NHWC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl Shape {
    /// Elements per image.
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Never: every value has at least one element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One step: operation `op` of the network, reading and writing activation slots.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Index into `Network::ops`.
    pub op: usize,
    /// Slots read (main input first, then the residual).
    pub reads: Vec<usize>,
    /// Slot written.
    pub writes: usize,
}

/// The plan of a network.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Shape of every value (0 is the padded input).
    pub shapes: Vec<Shape>,
    /// In execution order.
    pub steps: Vec<Step>,
    /// Elements per image of each activation slot (fp16).
    pub slots: Vec<usize>,
    /// The slot of the input (value 0) and of the output (the last value).
    pub io_slots: (usize, usize),
}

impl Plan {
    /// Activation memory per image, bytes (fp16).
    pub fn bytes_per_image(&self) -> usize {
        self.slots.iter().sum::<usize>() * 2
    }
}

fn out_side(side: usize, kernel: usize, stride: usize, pad: usize) -> Option<usize> {
    (side + 2 * pad)
        .checked_sub(kernel)
        .map(|d| d / stride.max(1) + 1)
}

/// The shape operation `op` produces from the `shapes` computed so far.
fn shape_of(op: &Op, shapes: &[Shape]) -> Result<Shape, String> {
    let get = |v: usize| {
        shapes
            .get(v)
            .copied()
            .ok_or(format!("reads value {v} before it exists"))
    };
    match op {
        Op::Conv(c) => {
            let x = get(c.input)?;
            if x.c != padded_channels(c.c) && x.c != c.c {
                return Err(format!(
                    "{}: {} input channels, the value has {}",
                    c.name, c.c, x.c
                ));
            }
            let side = |s, r| {
                out_side(s, r, c.stride, c.pad)
                    .ok_or(format!("{}: filter larger than its input", c.name))
            };
            let y = Shape {
                c: c.k,
                h: side(x.h, c.r)?,
                w: side(x.w, c.s)?,
            };
            if let Some(r) = c.residual {
                if get(r)? != y {
                    return Err(format!(
                        "{}: shortcut {:?} does not match the output {y:?}",
                        c.name,
                        get(r)?
                    ));
                }
            }
            Ok(y)
        }
        Op::MaxPool {
            input,
            kernel,
            stride,
            pad,
        } => {
            let x = get(*input)?;
            let side = |s| {
                out_side(s, *kernel, *stride, *pad)
                    .ok_or("pool window larger than its input".to_string())
            };
            Ok(Shape {
                c: x.c,
                h: side(x.h)?,
                w: side(x.w)?,
            })
        }
        Op::GlobalAvgPool { input } => Ok(Shape {
            c: get(*input)?.c,
            h: 1,
            w: 1,
        }),
        Op::Linear {
            input, out, inp, ..
        } => {
            let x = get(*input)?;
            if x.len() != *inp {
                return Err(format!(
                    "linear layer of {inp} inputs reads {} values",
                    x.len()
                ));
            }
            Ok(Shape {
                c: *out,
                h: 1,
                w: 1,
            })
        }
    }
}

/// Shapes, steps and slot reuse for `net`.
pub fn plan(net: &Network) -> Result<Plan, String> {
    let mut shapes = vec![Shape {
        c: padded_channels(net.input_channels),
        h: net.input_side,
        w: net.input_side,
    }];
    for op in &net.ops {
        let s = shape_of(op, &shapes)?;
        shapes.push(s);
    }
    let last = shapes.len() - 1;
    let mut last_read = vec![0usize; shapes.len()];
    for (i, op) in net.ops.iter().enumerate() {
        for v in op.inputs() {
            last_read[v] = last_read[v].max(i);
        }
    }
    let mut slot_of = vec![usize::MAX; shapes.len()];
    let (mut slots, mut free): (Vec<usize>, Vec<usize>) = (vec![shapes[0].len()], Vec::new());
    slot_of[0] = 0;
    let mut steps = Vec::with_capacity(net.ops.len());
    for (i, op) in net.ops.iter().enumerate() {
        let v = i + 1;
        let need = shapes[v].len();
        // Reuse the free slot that fits best (or grow the largest), else open a new one.
        free.sort_by_key(|&s| (slots[s] < need, slots[s].abs_diff(need)));
        let slot = match free.first().copied() {
            Some(s) => {
                free.remove(0);
                slots[s] = slots[s].max(need);
                s
            }
            None => {
                slots.push(need);
                slots.len() - 1
            }
        };
        slot_of[v] = slot;
        let reads: Vec<usize> = op.inputs().iter().map(|&x| slot_of[x]).collect();
        steps.push(Step {
            op: i,
            reads,
            writes: slot,
        });
        for x in op.inputs() {
            if last_read[x] == i && x != last && !free.contains(&slot_of[x]) {
                free.push(slot_of[x]);
            }
        }
    }
    Ok(Plan {
        io_slots: (slot_of[0], slot_of[last]),
        shapes,
        steps,
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::super::network::Conv;
    use super::*;

    fn conv(
        name: &str,
        input: usize,
        c: usize,
        k: usize,
        r: usize,
        stride: usize,
        residual: Option<usize>,
    ) -> Op {
        Op::Conv(Conv {
            name: name.into(),
            weight: vec![0.0; k * c * r * r],
            k,
            c,
            r,
            s: r,
            bias: None,
            stride,
            pad: r / 2,
            bn: None,
            input,
            residual,
            relu: true,
        })
    }

    /// Stem, pool, one bottleneck with a projection shortcut, pool, classifier.
    fn tiny() -> Network {
        Network {
            input_channels: 3,
            input_side: 32,
            ops: vec![
                conv("stem", 0, 3, 16, 7, 2, None), // v1 16×16×16
                Op::MaxPool {
                    input: 1,
                    kernel: 3,
                    stride: 2,
                    pad: 1,
                }, // v2 16×8×8
                conv("a", 2, 16, 8, 1, 1, None),    // v3
                conv("b", 3, 8, 8, 3, 1, None),     // v4
                conv("down", 2, 16, 32, 1, 1, None), // v5 shortcut
                conv("c", 4, 8, 32, 1, 1, Some(5)), // v6 = relu(c + down)
                Op::GlobalAvgPool { input: 6 },     // v7 32×1×1
                Op::Linear {
                    input: 7,
                    weight: vec![0.0; 10 * 32],
                    bias: vec![0.0; 10],
                    out: 10,
                    inp: 32,
                },
            ],
        }
    }

    #[test]
    fn shapes_follow_the_layers() {
        let p = plan(&tiny()).unwrap();
        let s = |v: usize| (p.shapes[v].c, p.shapes[v].h, p.shapes[v].w);
        assert_eq!(s(0), (8, 32, 32), "input padded to 8 channels");
        assert_eq!(s(1), (16, 16, 16));
        assert_eq!(s(2), (16, 8, 8));
        assert_eq!(s(6), (32, 8, 8));
        assert_eq!(s(8), (10, 1, 1));
    }

    #[test]
    fn slots_are_reused_but_never_while_a_later_step_still_reads_them() {
        let net = tiny();
        let p = plan(&net).unwrap();
        assert!(
            p.slots.len() < p.shapes.len(),
            "{} slots for {} values",
            p.slots.len(),
            p.shapes.len()
        );
        // Simulate: which value each slot holds; every read must find the value it expects.
        let mut holds = vec![usize::MAX; p.slots.len()];
        holds[p.io_slots.0] = 0;
        for step in &p.steps {
            for (slot, value) in step.reads.iter().zip(net.ops[step.op].inputs()) {
                assert_eq!(
                    holds[*slot], value,
                    "step {} reads a clobbered slot",
                    step.op
                );
            }
            assert!(
                !step.reads.contains(&step.writes),
                "step {} writes what it reads",
                step.op
            );
            assert!(p.slots[step.writes] >= p.shapes[step.op + 1].len());
            holds[step.writes] = step.op + 1;
        }
        assert_eq!(holds[p.io_slots.1], net.ops.len());
    }

    #[test]
    fn mismatched_shapes_are_refused() {
        let mut net = tiny();
        net.ops[5] = conv("c", 4, 8, 32, 1, 1, Some(3));
        assert!(plan(&net).unwrap_err().contains("shortcut"));
    }

    #[test]
    fn batches_round_up_to_their_bucket() {
        let b = buckets_up_to(24);
        assert_eq!(b, vec![1, 2, 4, 8, 16, 24]);
        assert_eq!(bucket(1, &b), Some(1));
        assert_eq!(bucket(3, &b), Some(4));
        assert_eq!(bucket(17, &b), Some(24));
        assert_eq!(bucket(25, &b), None);
        assert_eq!(bucket(0, &b), None);
        assert_eq!(buckets_up_to(256).len(), 9);
    }
}
