//! The built-in model: real ResNet50 structure, deterministic bytes, answers that depend on the
//! input. Needs ONNX Runtime (`scripts/setup.sh`; cargo sets `ORT_DYLIB_PATH`).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use engine::{Backend, BatchBuffer, CpuBackend, ModelSource};
use models::onnx::ModelProto;
use prost::Message;

fn workspace_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/models")
}

fn builtin() -> (PathBuf, Vec<u8>) {
    let dylib =
        std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH (set by .cargo/config.toml)");
    engine::init_onnx_runtime(dylib.as_ref()).expect("ONNX Runtime: run scripts/setup.sh first");
    let path = models::ensure_builtin(&workspace_cache(), models::DEFAULT_SEED, 2).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

#[test]
fn has_the_resnet50_v1_5_structure_and_signature() {
    let (_, bytes) = builtin();
    let sig = models::inspect(&bytes).unwrap();
    assert_eq!(
        (sig.input.as_str(), sig.output.as_str()),
        ("input", "logits")
    );
    assert_eq!((sig.classes, sig.fixed_batch), (1000, None));

    let graph = ModelProto::decode(&bytes[..]).unwrap().graph.unwrap();
    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &graph.node {
        *ops.entry(n.op_type.as_str()).or_default() += 1;
    }
    let expected: BTreeMap<&str, usize> = [
        ("Add", 16),
        ("BatchNormalization", 53),
        ("Conv", 53),
        ("Flatten", 1),
        ("Gemm", 1),
        ("GlobalAveragePool", 1),
        ("MaxPool", 1),
        ("Relu", 49),
    ]
    .into();
    assert_eq!(ops, expected);
    // torchvision's resnet50 has 25,557,032 trainable parameters (BN running stats excluded).
    let trainable: usize = graph
        .initializer
        .iter()
        .filter(|t| !t.name.ends_with("running_mean") && !t.name.ends_with("running_var"))
        .map(|t| t.raw_data.len() / 4)
        .sum();
    assert_eq!(trainable, 25_557_032);
    // v1.5: the stride sits on the 3x3 conv of each stage's first block.
    let conv2 = graph
        .node
        .iter()
        .find(|n| n.name == "layer2.0.conv2.Conv")
        .unwrap();
    let strides = conv2
        .attribute
        .iter()
        .find(|a| a.name == "strides")
        .unwrap();
    assert_eq!(strides.ints, vec![2, 2]);
}

#[test]
fn same_seed_gives_the_same_bytes() {
    let (_, cached) = builtin();
    let again = models::generate_resnet50(models::DEFAULT_SEED, 2).unwrap();
    assert!(
        again == cached,
        "regenerating seed {} changed the bytes",
        models::DEFAULT_SEED
    );
}

#[test]
fn different_images_get_different_answers() {
    let (path, _) = builtin();
    let mut backend = CpuBackend::new(&engine::CpuConfig::new(
        ModelSource::File(path),
        2,
        models::IMAGENET_NORMALIZATION,
    ))
    .unwrap();
    // Not the calibration set: another seed.
    let images = models::varied_images(424_242, 32);
    let mut batch = BatchBuffer::new(images.len());
    images.iter().for_each(|i| assert!(batch.push(i)));
    let (mut logits, mut timings) = (Vec::new(), Vec::new());
    backend.run(&batch, &mut logits, &mut timings).unwrap();
    let top1: Vec<usize> = logits
        .chunks_exact(1000)
        .map(|row| {
            (0..1000)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap()
        })
        .collect();
    let distinct: HashSet<usize> = top1.iter().copied().collect();
    eprintln!(
        "top-1 of 32 varied images: {} distinct: {top1:?}",
        distinct.len()
    );
    assert!(
        distinct.len() >= 12,
        "only {} distinct top-1 classes: {top1:?}",
        distinct.len()
    );
    let most = top1
        .iter()
        .map(|c| top1.iter().filter(|d| *d == c).count())
        .max()
        .unwrap();
    assert!(most <= 6, "one class wins {most} of 32 images");
}

#[test]
fn the_gpu_builder_fuses_resnet50_into_53_conv_steps() {
    let (_, bytes) = builtin();
    let net = models::network_from_onnx(&bytes).unwrap();
    let convs: Vec<&engine::gpu::network::Conv> = net
        .ops
        .iter()
        .filter_map(|op| match op {
            engine::gpu::network::Op::Conv(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(convs.len(), 53, "every Conv, with its BatchNorm folded in");
    assert!(convs.iter().all(|c| c.bn.is_some()));
    assert_eq!(
        convs.iter().filter(|c| c.residual.is_some()).count(),
        16,
        "one shortcut per block"
    );
    assert_eq!(
        convs.iter().filter(|c| c.relu).count(),
        49,
        "all but the 4 projection shortcuts"
    );
    assert_eq!(
        net.ops.len(),
        53 + 3,
        "plus MaxPool, GlobalAveragePool, Gemm"
    );
    let plan = engine::gpu::plan::plan(&net).unwrap();
    let out = plan.shapes.last().unwrap();
    assert_eq!((out.c, out.h, out.w), (1000, 1, 1));
    assert_eq!((plan.shapes[1].c, plan.shapes[1].h), (64, 112), "the stem");
    eprintln!(
        "ResNet50 plan: {} steps, {} activation slots, {:.1} MiB of fp16 activations per image",
        plan.steps.len(),
        plan.slots.len(),
        plan.bytes_per_image() as f64 / (1 << 20) as f64
    );
    assert!(plan.slots.len() <= 6, "{} slots", plan.slots.len());
    let fused = engine::gpu::fold::fuse(convs[0]);
    assert_eq!(
        (fused.k, fused.c, fused.r, fused.s),
        (64, 8, 7, 7),
        "stem filters padded to 8 channels"
    );
}

#[test]
fn the_device_script_names_the_current_model_file() {
    // scripts/gpu/on-device.sh generates the model where the server will look for it, by name.
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/gpu/on-device.sh");
    let text = std::fs::read_to_string(script).unwrap();
    let name = format!(
        "resnet50-seed{}-v{}.onnx",
        models::DEFAULT_SEED,
        models::GENERATOR_VERSION
    );
    assert!(text.contains(&name), "on-device.sh must name {name}");
}
