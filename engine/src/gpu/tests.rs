//! The executor on the CPU twin against a plain fp32 NCHW forward pass, and the executor's
//! ordering rules (what is allocated when, what is copied, what is captured) on a recording
//! device.

use std::sync::Arc;

use kernels::Affine;

use super::device::{ConvArgs, DeviceOps, GpuError, Mark};
use super::exec::{Executor, Graphs};
use super::layout::{PoolGeom, Region};
use super::model::{ConvLayer, PreparedModel};
use super::network::{BatchNorm, Conv, Network, Op};
use super::twin::CpuTwin;
use crate::{Normalization, IMAGE_BYTES, IMAGE_SIDE};

const NORM: Normalization = Normalization {
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
};

fn affine() -> Affine {
    Affine::from_mean_std(NORM.mean, NORM.std)
}

fn lcg(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12_345);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((s >> 8) as f32 / (1 << 24) as f32 - 0.5) * 2.0 * scale
        })
        .collect()
}

fn conv(
    name: &str,
    input: usize,
    (c, k, r, stride): (usize, usize, usize, usize),
    seed: u32,
) -> Conv {
    let fan_in = (c * r * r) as f32;
    Conv {
        name: name.into(),
        weight: lcg(k * c * r * r, seed, (3.0 / fan_in).sqrt()),
        k,
        c,
        r,
        s: r,
        bias: None,
        stride,
        pad: r / 2,
        bn: Some(BatchNorm {
            gamma: lcg(k, seed + 1, 0.3).iter().map(|g| g + 1.0).collect(),
            beta: lcg(k, seed + 2, 0.2),
            mean: lcg(k, seed + 3, 0.2),
            var: lcg(k, seed + 4, 0.3).iter().map(|v| v + 1.0).collect(),
            eps: 1e-5,
        }),
        input,
        residual: None,
        relu: true,
    }
}

/// A small ResNet on 224×224 input: stem, max pool, one bottleneck with a projection shortcut,
/// global average pool, classifier.
fn tiny() -> Network {
    let mut c_last = conv("c", 4, (8, 16, 1, 1), 40);
    c_last.residual = Some(5);
    let mut down = conv("down", 2, (8, 16, 1, 1), 50);
    down.relu = false;
    Network {
        input_channels: 3,
        input_side: IMAGE_SIDE,
        ops: vec![
            Op::Conv(conv("stem", 0, (3, 8, 7, 2), 10)),
            Op::MaxPool {
                input: 1,
                kernel: 3,
                stride: 2,
                pad: 1,
            },
            Op::Conv(conv("a", 2, (8, 8, 1, 1), 20)),
            Op::Conv(conv("b", 3, (8, 8, 3, 1), 30)),
            Op::Conv(down),
            Op::Conv(c_last),
            Op::GlobalAvgPool { input: 6 },
            Op::Linear {
                input: 7,
                weight: lcg(10 * 16, 60, 0.5),
                bias: lcg(10, 61, 3.0),
                out: 10,
                inp: 16,
            },
        ],
    }
}

/// Plain fp32 NCHW forward pass of `net` on one image (BatchNorm applied, not folded).
fn reference(net: &Network, image: &[u8]) -> Vec<f32> {
    let mut x = vec![0.0; IMAGE_BYTES];
    NORM.image_to_chw(image, &mut x);
    let mut values: Vec<(Vec<f32>, usize, usize, usize)> = vec![(x, 3, IMAGE_SIDE, IMAGE_SIDE)];
    for op in &net.ops {
        let out = match op {
            Op::Conv(cv) => {
                let (x, c, h, w) = &values[cv.input];
                let (oh, ow) = (
                    (h + 2 * cv.pad - cv.r) / cv.stride + 1,
                    (w + 2 * cv.pad - cv.s) / cv.stride + 1,
                );
                let mut y = vec![0.0f32; cv.k * oh * ow];
                for k in 0..cv.k {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = cv.bias.as_ref().map_or(0.0, |b| b[k]);
                            for ci in 0..*c {
                                for ry in 0..cv.r {
                                    for rx in 0..cv.s {
                                        let iy = (oy * cv.stride + ry).wrapping_sub(cv.pad);
                                        let ix = (ox * cv.stride + rx).wrapping_sub(cv.pad);
                                        if iy < *h && ix < *w {
                                            acc += x[(ci * h + iy) * w + ix]
                                                * cv.weight[((k * c + ci) * cv.r + ry) * cv.s + rx];
                                        }
                                    }
                                }
                            }
                            if let Some(bn) = &cv.bn {
                                acc = (acc - bn.mean[k]) / (bn.var[k] + bn.eps).sqrt()
                                    * bn.gamma[k]
                                    + bn.beta[k];
                            }
                            y[(k * oh + oy) * ow + ox] = acc;
                        }
                    }
                }
                if let Some(r) = cv.residual {
                    y.iter_mut().zip(&values[r].0).for_each(|(a, b)| *a += b);
                }
                if cv.relu {
                    y.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                (y, cv.k, oh, ow)
            }
            Op::MaxPool {
                input,
                kernel,
                stride,
                pad,
            } => {
                let (x, c, h, w) = &values[*input];
                let g = PoolGeom {
                    c: *c,
                    h: *h,
                    w: *w,
                    kernel: *kernel,
                    stride: *stride,
                    pad: *pad,
                };
                let (oh, ow) = (g.oh(), g.ow());
                let mut y = vec![f32::NEG_INFINITY; c * oh * ow];
                for ci in 0..*c {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            for ky in 0..*kernel {
                                for kx in 0..*kernel {
                                    let iy = (oy * stride + ky).wrapping_sub(*pad);
                                    let ix = (ox * stride + kx).wrapping_sub(*pad);
                                    if iy < *h && ix < *w {
                                        let v = x[(ci * h + iy) * w + ix];
                                        let o = &mut y[(ci * oh + oy) * ow + ox];
                                        *o = o.max(v);
                                    }
                                }
                            }
                        }
                    }
                }
                (y, *c, oh, ow)
            }
            Op::GlobalAvgPool { input } => {
                let (x, c, h, w) = &values[*input];
                let y = x
                    .chunks_exact(h * w)
                    .map(|p| p.iter().sum::<f32>() / (h * w) as f32)
                    .collect();
                (y, *c, 1, 1)
            }
            Op::Linear {
                input,
                weight,
                bias,
                out,
                inp,
            } => {
                let x = &values[*input].0;
                let y = (0..*out)
                    .map(|o| bias[o] + (0..*inp).map(|i| x[i] * weight[o * inp + i]).sum::<f32>())
                    .collect();
                (y, *out, 1, 1)
            }
        };
        values.push(out);
    }
    values.pop().map(|v| v.0).unwrap_or_default()
}

fn image(seed: u32) -> Vec<u8> {
    lcg(IMAGE_BYTES, seed, 1.0)
        .iter()
        .enumerate()
        .map(|(i, v)| {
            ((v * 60.0 + 128.0 + ((i / 3 % 224) as f32 * 0.4)) as i32).clamp(0, 255) as u8
        })
        .collect()
}

#[test]
fn the_twin_runs_the_plan_with_fp16_error_only() {
    let net = tiny();
    let model = Arc::new(PreparedModel::build(&net).unwrap());
    assert_eq!((model.features, model.classes), (16, 10));
    let mut exec = Executor::new(CpuTwin::default(), model, 4, affine()).unwrap();
    assert_eq!(exec.buckets(), &[1, 2, 4]);
    assert_eq!(exec.capture_graphs().unwrap(), Graphs::Unsupported);
    let images: Vec<Vec<u8>> = (0..3).map(|i| image(100 + i)).collect();
    let flat: Vec<u8> = images.concat();
    let (mut logits, mut timings) = (Vec::new(), Vec::new());
    exec.run(&flat, 3, &mut logits, &mut timings).unwrap();
    assert_eq!(logits.len(), 30);
    let stages: Vec<_> = timings.iter().map(|t| t.stage).collect();
    assert_eq!(stages, ["h2d", "compute", "d2h"]);
    for (i, img) in images.iter().enumerate() {
        let want = reference(&net, img);
        let got = &logits[i * 10..(i + 1) * 10];
        let spread = want.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 0.01 * spread.max(1.0),
            "image {i}: max error {worst} (logits up to {spread})"
        );
        assert!(worst > 0.0, "fp16 storage must differ from fp32 somewhere");
        // Alone in a batch of one: the same answer, bit for bit (rows never mix).
        let mut alone = Vec::new();
        exec.run(img, 1, &mut alone, &mut timings).unwrap();
        assert_eq!(alone, got, "image {i} alone vs in a batch of 3");
    }
    // Step by step: one output per step, the last one the logits.
    let steps = exec.run_traced(&flat, 3).unwrap();
    assert_eq!(steps.len(), 8);
    assert_eq!(steps[0].len(), 3 * 8 * 112 * 112, "the stem's fp16 output");
    assert_eq!(steps[7], logits, "the traced logits are the served ones");
    // The same images as tensors the client normalised itself: the same answer, bit for bit
    // (both kernels compute x · scale + bias in f32 and round it to fp16 once).
    let mut tensors = Vec::new();
    let mut chw = vec![0.0f32; IMAGE_BYTES];
    for img in &images {
        NORM.image_to_chw(img, &mut chw);
        tensors.extend(chw.iter().flat_map(|v| v.to_le_bytes()));
    }
    let mut from_tensors = Vec::new();
    exec.run_kind(
        crate::InputKind::Tensor,
        &tensors,
        3,
        (&mut from_tensors, &mut timings),
    )
    .unwrap();
    assert_eq!(from_tensors, logits, "tensors and images agree");
    let err = exec
        .run(&[0u8; IMAGE_BYTES * 5], 5, &mut logits, &mut timings)
        .unwrap_err();
    assert!(err.to_string().contains("largest bucket"), "{err}");
}

/// ResNet's projection shortcut runs as a plain convolution (no bias: never cuDNN's fused call
/// with an identity activation), and the convolution that adds it carries both biases, summed
/// in fp32 and rounded to fp16 once. (The twin's answers with it: the test above.)
#[test]
fn the_projection_shortcut_is_a_plain_convolution_whose_bias_the_adder_carries() {
    use super::fold::fuse;
    use super::model::{plain_shortcuts, Layer};
    use half::f16;
    let net = tiny();
    assert_eq!(plain_shortcuts(&net), [(4, 5)].into());
    let model = PreparedModel::build(&net).unwrap();
    let layer = |i: usize| match &model.layers[i] {
        Layer::Conv(c) => c.clone(),
        other => panic!("step {i} is {other:?}"),
    };
    assert_eq!(layer(4).bias, None, "the shortcut has no bias");
    assert!([0, 2, 3, 5].iter().all(|&i| layer(i).bias.is_some()));
    let fused = |i: usize| match &net.ops[i] {
        Op::Conv(c) => fuse(c).bias,
        _ => unreachable!(),
    };
    let want: Vec<f16> = fused(5)
        .iter()
        .zip(fused(4))
        .map(|(a, b)| f16::from_f32(a + b))
        .collect();
    let r = layer(5).bias.unwrap();
    let got: Vec<f16> = model.arena[r.offset..r.offset + r.bytes]
        .chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(got, want);
    // With an activation, or read by anything else, it stays a fused convolution of its own.
    let mut relu = tiny();
    if let Op::Conv(c) = &mut relu.ops[4] {
        c.relu = true;
    }
    assert!(plain_shortcuts(&relu).is_empty());
    let mut shared = tiny();
    shared.ops[6] = Op::GlobalAvgPool { input: 5 };
    assert!(plain_shortcuts(&shared).is_empty());
}

#[test]
fn networks_the_engine_cannot_run_are_refused() {
    let mut net = tiny();
    net.ops.swap(6, 7);
    assert!(PreparedModel::build(&net).is_err());
    let mut net = tiny();
    net.ops.pop();
    assert!(PreparedModel::build(&net)
        .unwrap_err()
        .contains("GlobalAveragePool"));
}

/// What the recording device saw.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Alloc(usize),
    CopyIn(usize),
    CopyOut(usize),
    Step(&'static str, usize),
    Prepare(usize, usize),
    Begin,
    End(usize),
    Launch(usize),
}

/// Pretends to be a GPU with graphs; buffers are ids, and every write is checked not to alias a
/// read of the same step.
#[derive(Default)]
struct Recording {
    calls: Vec<Call>,
    sizes: Vec<usize>,
    capturing: bool,
    fail_capture_of: Option<usize>,
}

impl Recording {
    fn step(
        &mut self,
        name: &'static str,
        n: usize,
        reads: &[usize],
        writes: usize,
    ) -> Result<(), GpuError> {
        assert!(!reads.contains(&writes), "{name} writes a buffer it reads");
        self.calls.push(Call::Step(name, n));
        Ok(())
    }
}

impl DeviceOps for Recording {
    type Buf = usize;
    fn alloc(&mut self, bytes: usize) -> Result<usize, GpuError> {
        assert!(!self.capturing, "allocation during capture");
        self.calls.push(Call::Alloc(bytes));
        self.sizes.push(bytes);
        Ok(self.sizes.len() - 1)
    }
    fn upload(&mut self, host: &[u8]) -> Result<usize, GpuError> {
        self.alloc(host.len())
    }
    fn copy_in(&mut self, host: &[u8], dst: &usize) -> Result<(), GpuError> {
        assert!(host.len() <= self.sizes[*dst]);
        self.calls.push(Call::CopyIn(host.len()));
        Ok(())
    }
    fn read(&mut self, src: &usize, bytes: usize) -> Result<Vec<u8>, GpuError> {
        assert!(bytes <= self.sizes[*src]);
        Ok(vec![0; bytes])
    }
    fn copy_out(&mut self, src: &usize, floats: usize) -> Result<(), GpuError> {
        assert!(floats * 4 <= self.sizes[*src]);
        self.calls.push(Call::CopyOut(floats));
        Ok(())
    }
    fn finish(&mut self, _out: &mut [f32]) -> Result<(), GpuError> {
        Ok(())
    }
    fn normalize(
        &mut self,
        s: &usize,
        d: &usize,
        px: usize,
        ch: usize,
        _: &Affine,
    ) -> Result<(), GpuError> {
        assert!(px * 3 <= self.sizes[*s] && px * ch * 2 <= self.sizes[*d]);
        self.step("normalize", px / (IMAGE_SIDE * IMAGE_SIDE), &[*s], *d)
    }
    fn tensor_in(
        &mut self,
        s: &usize,
        d: &usize,
        n: usize,
        plane: usize,
        ch: usize,
    ) -> Result<(), GpuError> {
        assert!(n * plane * 12 <= self.sizes[*s] && n * plane * ch * 2 <= self.sizes[*d]);
        self.step("tensor_in", n, &[*s], *d)
    }
    fn prepare_conv(&mut self, id: usize, _: &ConvLayer, n: usize) -> Result<usize, GpuError> {
        self.calls.push(Call::Prepare(id, n));
        Ok(1000 * n + id)
    }
    fn conv(
        &mut self,
        id: usize,
        l: &ConvLayer,
        n: usize,
        a: ConvArgs<'_, usize>,
    ) -> Result<(), GpuError> {
        assert!(
            self.calls.contains(&Call::Prepare(id, n)),
            "step {id} run unprepared for {n}"
        );
        let ws = a.workspace.map_or(0, |w| self.sizes[*w]);
        assert!(ws >= 1000 * n + id, "workspace too small");
        assert!(l.geom.y_desc(n).dims.iter().product::<usize>() * 2 <= self.sizes[*a.y]);
        let reads: Vec<usize> = std::iter::once(*a.x).chain(a.z.copied()).collect();
        self.step("conv", n, &reads, *a.y)
    }
    fn max_pool(&mut self, _: &PoolGeom, n: usize, x: &usize, y: &usize) -> Result<(), GpuError> {
        self.step("max_pool", n, &[*x], *y)
    }
    fn avg_pool(
        &mut self,
        _: usize,
        _: usize,
        n: usize,
        x: &usize,
        y: &usize,
    ) -> Result<(), GpuError> {
        self.step("avg_pool", n, &[*x], *y)
    }
    fn linear(
        &mut self,
        _: (usize, usize),
        n: usize,
        x: &usize,
        w: &usize,
        _: (Region, Region),
        y: &usize,
    ) -> Result<(), GpuError> {
        self.step("linear", n, &[*x, *w], *y)
    }
    fn begin_capture(&mut self) -> Result<bool, GpuError> {
        self.capturing = true;
        self.calls.push(Call::Begin);
        Ok(true)
    }
    fn end_capture(&mut self, bucket: usize) -> Result<(), GpuError> {
        self.capturing = false;
        self.calls.push(Call::End(bucket));
        match self.fail_capture_of {
            Some(b) if b == bucket => Err(GpuError::Failed("injected capture failure".into())),
            _ => Ok(()),
        }
    }
    fn launch_graph(&mut self, bucket: usize) -> Result<bool, GpuError> {
        self.calls.push(Call::Launch(bucket));
        Ok(true)
    }
    fn mark(&mut self, _: Mark) -> Result<(), GpuError> {
        Ok(())
    }
    fn elapsed(&mut self, _: Mark, _: Mark) -> Result<std::time::Duration, GpuError> {
        Ok(std::time::Duration::ZERO)
    }
}

fn recorded(fail_capture_of: Option<usize>) -> (Executor<Recording>, Graphs) {
    let model = Arc::new(PreparedModel::build(&tiny()).unwrap());
    let dev = Recording {
        fail_capture_of,
        ..Recording::default()
    };
    let mut exec = Executor::new(dev, model, 8, affine()).unwrap();
    let graphs = exec.capture_graphs().unwrap();
    (exec, graphs)
}

#[test]
fn batches_copy_their_images_replay_their_bucket_and_allocate_nothing() {
    let (mut exec, graphs) = recorded(None);
    assert_eq!(graphs, Graphs::All);
    let before = exec.device().calls.len();
    let allocs = exec
        .device()
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Alloc(_)))
        .count();
    // Arena, image and tensor staging, the slots, pooled, logits, one workspace of the largest
    // need.
    let slots = PreparedModel::build(&tiny()).unwrap().plan.slots.len();
    assert_eq!(allocs, 6 + slots);
    assert_eq!(
        *exec.device().sizes.last().unwrap(),
        (1000 * 8 + 5usize).next_multiple_of(256)
    );
    let (mut logits, mut t) = (Vec::new(), Vec::new());
    exec.run(&vec![0u8; 8 * IMAGE_BYTES], 3, &mut logits, &mut t)
        .unwrap();
    let run = &exec.device().calls[before..];
    assert_eq!(
        run,
        [
            Call::CopyIn(3 * IMAGE_BYTES),
            Call::Step("normalize", 3),
            Call::Launch(4),
            Call::CopyOut(30)
        ],
        "n images in and normalised, the bucket's graph, n rows out"
    );
    assert_eq!(logits.len(), 30);
    let before = exec.device().calls.len();
    let tensors = vec![0u8; 2 * crate::TENSOR_BYTES];
    exec.run_kind(crate::InputKind::Tensor, &tensors, 2, (&mut logits, &mut t))
        .unwrap();
    assert_eq!(
        &exec.device().calls[before..],
        [
            Call::CopyIn(2 * crate::TENSOR_BYTES),
            Call::Step("tensor_in", 2),
            Call::Launch(2),
            Call::CopyOut(20)
        ],
        "tensors take their own kernel into the same graph"
    );
}

#[test]
fn a_bucket_whose_capture_fails_launches_its_steps() {
    let (mut exec, graphs) = recorded(Some(2));
    assert_eq!(
        graphs,
        Graphs::Failed(vec![2], "injected capture failure".into())
    );
    let before = exec.device().calls.len();
    let (mut logits, mut t) = (Vec::new(), Vec::new());
    exec.run(&vec![0u8; 2 * IMAGE_BYTES], 2, &mut logits, &mut t)
        .unwrap();
    let run = &exec.device().calls[before..];
    assert_eq!(run.first(), Some(&Call::CopyIn(2 * IMAGE_BYTES)));
    assert!(!run.contains(&Call::Launch(2)));
    let steps: Vec<_> = run
        .iter()
        .filter_map(|c| match c {
            Call::Step(s, n) => Some((*s, *n)),
            _ => None,
        })
        .collect();
    assert_eq!(steps.len(), 1 + 8, "normalize and the eight steps");
    assert!(steps.iter().all(|(_, n)| *n == 2));
    assert_eq!(run.last(), Some(&Call::CopyOut(20)));
}

#[test]
fn the_plan_backend_serves_through_the_lanes() {
    use crate::{BackendFactory, BatchBuffer, Job, Lanes};
    let model = Arc::new(PreparedModel::build(&tiny()).unwrap());
    let factory: BackendFactory = Arc::new(move |_| {
        let exec = Executor::new(CpuTwin::default(), model.clone(), 4, affine())?;
        Ok(Box::new(super::exec::PlanBackend::new(exec, None)) as Box<dyn crate::Backend>)
    });
    let mut lanes = Lanes::start(1, factory, 4, 2, &crate::warmup_batch_sizes(4)).unwrap();
    assert_eq!(lanes.classes(), 10);
    let mut buffer = lanes.take_buffers().remove(0).remove(0);
    let images: Vec<Vec<u8>> = (0..3).map(|i| image(300 + i)).collect();
    for img in &images {
        assert!(buffer.push(img));
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    let done: crate::JobDone = Box::new(move |buf: BatchBuffer, r| {
        let _ = tx.send((buf.len(), r.map(|o| (o.logits.to_vec(), o.timings.len()))));
    });
    assert!(lanes
        .try_submit(
            0,
            Job {
                batch: buffer,
                done
            }
        )
        .is_ok());
    let (n, outcome) = rx.recv().unwrap();
    let (logits, stages) = outcome.unwrap();
    assert_eq!((n, logits.len(), stages), (3, 30, 3));
    let mut direct = Executor::new(
        CpuTwin::default(),
        Arc::new(PreparedModel::build(&tiny()).unwrap()),
        4,
        affine(),
    )
    .unwrap();
    let (mut want, mut t) = (Vec::new(), Vec::new());
    direct.run(&images.concat(), 3, &mut want, &mut t).unwrap();
    assert_eq!(logits, want, "the lane's answer is the executor's");
    lanes.shutdown();
}
