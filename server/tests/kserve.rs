//! The KServe v2 HTTP protocol for both models, as Triton's clients send it: JSON header plus
//! the binary tensor extension, the classification extension, and the protocol's errors.

mod common;

use common::{request, TestServer};
use serde_json::{json, Value};

/// A v2 inference request for `images` (binary BYTES tensor) asking for `output` parameters.
fn infer_body(images: &[Vec<u8>], output: Value) -> (Vec<u8>, usize) {
    let mut raw = Vec::new();
    for i in images {
        raw.extend_from_slice(&(i.len() as u32).to_le_bytes());
        raw.extend_from_slice(i);
    }
    let header = json!({
        "id": "req-1",
        "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [images.len(), 1],
                    "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "logits", "parameters": output}],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&raw);
    (body, header.len())
}

async fn infer(server: &TestServer, model: &str, body: &[u8], header_len: usize) -> common::Reply {
    let len = header_len.to_string();
    let path = format!("/v2/models/{model}/infer");
    let headers = [("inference-header-content-length", len.as_str())];
    request(server.addr, "POST", &path, &headers, body)
        .await
        .unwrap()
}

/// The JSON header and binary section of a binary response.
fn split(r: &common::Reply) -> (Value, Vec<u8>) {
    let n: usize = r.headers["inference-header-content-length"]
        .parse()
        .unwrap();
    (
        serde_json::from_slice(&r.body[..n]).unwrap(),
        r.body[n..].to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triton_style_requests_get_the_answers_of_predict() {
    let server = TestServer::start(&[("MAX_BATCH_SIZE", "8")]).await;
    let meta = server.get("/v2").await.unwrap().json();
    assert_eq!(
        meta["extensions"],
        json!([
            "classification",
            "binary_tensor_data",
            "model_repository",
            "statistics"
        ])
    );
    assert_eq!(server.get("/v2/health/live").await.unwrap().status, 200);
    assert_eq!(server.get("/v2/health/ready").await.unwrap().status, 200);
    assert_eq!(
        server
            .get("/v2/models/resnet50_image/ready")
            .await
            .unwrap()
            .status,
        200
    );
    let m = server
        .get("/v2/models/resnet50_image")
        .await
        .unwrap()
        .json();
    assert_eq!(
        m["inputs"][0],
        json!({"name": "IMAGE", "datatype": "BYTES", "shape": [-1, 1]})
    );
    assert_eq!(m["outputs"][0]["shape"], json!([-1, 1000]));
    let c = server
        .get("/v2/models/resnet50_image/versions/1/config")
        .await
        .unwrap()
        .json();
    assert_eq!(c["max_batch_size"], 8);

    let files: Vec<_> = common::files("good").into_iter().take(4).collect();
    let images: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let mut expected = Vec::new();
    for f in &files {
        expected.push(server.predict_file(f, "").await.unwrap().predictions()[0].0);
    }

    // Classification, binary output: "score:index:label" strings, top 3 per image.
    let (body, n) = infer_body(&images, json!({"classification": 3, "binary_data": true}));
    let r = infer(&server, "resnet50_image", &body, n).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let (head, raw) = split(&r);
    assert_eq!(head["id"], "req-1");
    assert_eq!(head["outputs"][0]["shape"], json!([images.len(), 3]));
    let mut strings = Vec::new();
    let mut rest = raw.as_slice();
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        strings.push(String::from_utf8(rest[4..4 + len].to_vec()).unwrap());
        rest = &rest[4 + len..];
    }
    for (i, want) in expected.iter().enumerate() {
        let top: u64 = strings[i * 3].split(':').nth(1).unwrap().parse().unwrap();
        assert_eq!(top, *want, "{}: {}", files[i].display(), strings[i * 3]);
    }

    // Raw FP32 logits as JSON.
    let (body, n) = infer_body(&images[..1], json!({"binary_data": false}));
    let r = infer(&server, "resnet50_image", &body, n).await;
    let logits: Vec<f64> = serde_json::from_slice::<Value>(&r.body).unwrap()["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(logits.len(), 1000);
    let argmax = (0..1000)
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap();
    assert_eq!(argmax as u64, expected[0]);

    // The protocol's errors.
    let r = infer(&server, "densenet_image", &body, n).await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("densenet_image"));
    let r = infer(&server, "resnet50", &body, n).await;
    assert_eq!(r.status, 400, "IMAGE is not the tensor model's input");
    let wrong =
        json!({"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [2, 3], "data": ["a"]}]});
    let wrong = wrong.to_string().into_bytes();
    let r = infer(&server, "resnet50_image", &wrong, wrong.len()).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap().contains("shape"),
        "{:?}",
        r.json()
    );
    let garbage = infer_body(&[b"not an image".to_vec()], json!({}));
    let r = infer(&server, "resnet50_image", &garbage.0, garbage.1).await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        server.get("/health").await.unwrap().status == 200,
        "the server keeps serving"
    );

    // Statistics: two successful requests of 4 + 1 images; the wrong shape and the garbage failed.
    let s = server
        .get("/v2/models/resnet50_image/stats")
        .await
        .unwrap()
        .json();
    let m = &s["model_stats"][0];
    assert_eq!(m["inference_count"], 5, "{s}");
    let st = &m["inference_stats"];
    let counts = (
        st["success"]["count"].as_u64(),
        st["fail"]["count"].as_u64(),
    );
    assert_eq!(counts, (Some(2), Some(2)), "{s}");
    assert_eq!(
        st["queue"]["count"], 2,
        "once per request, as Triton counts"
    );
    assert!(st["compute_infer"]["ns"].as_u64().unwrap() > 0);
    assert!(st["success"]["ns"].as_u64().unwrap() > 0);
    server.stop().await.unwrap();
}

/// `file` as the network's own input: preprocessed as `/predict` does, normalised, f32 CHW.
fn tensor_of(file: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(file).unwrap();
    let pre = gateway::imaging::preprocess(&bytes, u64::MAX, Default::default()).unwrap();
    let norm = engine::Normalization {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
    let mut chw = vec![0.0; engine::IMAGE_BYTES];
    norm.image_to_chw(&pre.pixels, &mut chw);
    chw
}

fn argmax(v: &[f64]) -> u64 {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tensor_model_takes_normalised_fp32_and_answers_as_predict() {
    let server = TestServer::start(&[("MAX_BATCH_SIZE", "8")]).await;
    let m = server.get("/v2/models/resnet50").await.unwrap().json();
    assert_eq!(
        m["inputs"][0],
        json!({"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]})
    );
    assert_eq!(
        m["outputs"][0],
        json!({"name": "logits", "datatype": "FP32", "shape": [-1, 1000]})
    );
    let c = server
        .get("/v2/models/resnet50/config")
        .await
        .unwrap()
        .json();
    assert_eq!(c["input"][0]["dims"], json!([3, 224, 224]));
    assert_eq!(c["input"][0]["format"], "FORMAT_NCHW");

    let files: Vec<_> = common::files("good").into_iter().take(3).collect();
    let mut expected = Vec::new();
    for f in &files {
        expected.push(server.predict_file(f, "").await.unwrap().predictions()[0].0);
    }
    let tensors: Vec<Vec<f32>> = files.iter().map(|f| tensor_of(f)).collect();

    // Binary: the three tensors in one request, FP32 logits back as binary.
    let raw: Vec<u8> = tensors
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let header = json!({
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 3, 224, 224],
                    "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&raw);
    let r = infer(&server, "resnet50", &body, header.len()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let (head, out) = split(&r);
    assert_eq!(head["model_name"], "resnet50");
    assert_eq!(head["outputs"][0]["shape"], json!([3, 1000]));
    for (i, want) in expected.iter().enumerate() {
        let row: Vec<f64> = out[i * 4000..(i + 1) * 4000]
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap())))
            .collect();
        assert_eq!(argmax(&row), *want, "{}", files[i].display());
    }

    // JSON data, nested as [1, 3, 224, 224], classified.
    let nested: Vec<Vec<Vec<f32>>> = tensors[0]
        .chunks(224 * 224)
        .map(|plane| plane.chunks(224).map(<[f32]>::to_vec).collect())
        .collect();
    let header = json!({
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224], "data": [nested]}],
        "outputs": [{"name": "logits", "parameters": {"classification": 1}}],
    })
    .to_string();
    let r = infer(&server, "resnet50", header.as_bytes(), header.len()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let top = r.json()["outputs"][0]["data"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        top.split(':').nth(1).unwrap(),
        expected[0].to_string(),
        "{top}"
    );

    // A wrong shape, short data and an unknown output are the client's errors.
    for (inputs, outputs, says) in [
        (
            json!([{"name": "input", "datatype": "FP32", "shape": [1, 224, 224, 3], "data": [0.0]}]),
            json!(null),
            "shape",
        ),
        (
            json!([{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224], "data": [0.0, 1.0]}]),
            json!(null),
            "bytes",
        ),
        (
            json!([{"name": "input", "datatype": "UINT8", "shape": [1, 3, 224, 224], "data": [0]}]),
            json!(null),
            "FP32",
        ),
        (
            json!([{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224], "data": [0.0]}]),
            json!([{"name": "probs"}]),
            "probs",
        ),
    ] {
        let mut h = json!({"inputs": inputs});
        if !outputs.is_null() {
            h["outputs"] = outputs;
        }
        let h = h.to_string();
        let r = infer(&server, "resnet50", h.as_bytes(), h.len()).await;
        assert_eq!(r.status, 400, "{h:.120}");
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(e.contains(says), "{e}");
    }
    let s = server.get("/v2/models/stats").await.unwrap().json();
    let names: Vec<_> = s["model_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].clone())
        .collect();
    assert_eq!(names, [json!("resnet50"), json!("resnet50_image")]);
    let t = &s["model_stats"][0];
    assert_eq!(t["inference_count"], 4, "{s}");
    assert_eq!(t["inference_stats"]["fail"]["count"], 4, "{s}");
    assert_eq!(
        t["inference_stats"]["compute_input"]["ns"], 0,
        "tensors need no decoding"
    );
    server.stop().await.unwrap();
}

/// The built-in model with its batch dimension fixed at 1, as some exported files have it.
fn fixed_batch_model() -> std::path::PathBuf {
    use prost::Message;
    let bytes = std::fs::read(common::builtin_model_path()).unwrap();
    let mut model = models::onnx::ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = model.graph.as_mut().unwrap();
    for value in graph.input.iter_mut().chain(graph.output.iter_mut()) {
        let shape = value.r#type.as_mut().and_then(|t| t.tensor_type.as_mut());
        if let Some(dim) = shape
            .and_then(|t| t.shape.as_mut())
            .and_then(|s| s.dim.first_mut())
        {
            *dim = models::onnx::Dimension {
                dim_value: Some(1),
                dim_param: None,
            };
        }
    }
    let dir = std::env::temp_dir().join(format!("gw-fixed-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

/// Triton's clients (perf_analyzer) size their batches by the configuration's `max_batch_size`:
/// it is the limit requests are checked against, the file's fixed batch included, not
/// `MAX_BATCH_SIZE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_config_advertises_the_batch_that_is_served() {
    let path = fixed_batch_model();
    let server = TestServer::start(&[
        ("MODEL_PATH", path.to_str().unwrap()),
        ("MAX_BATCH_SIZE", "8"),
    ])
    .await;
    for model in ["resnet50", "resnet50_image"] {
        let config = server
            .get(&format!("/v2/models/{model}/config"))
            .await
            .unwrap();
        assert_eq!(config.status, 200);
        assert_eq!(config.json()["max_batch_size"], 1, "{model}");
    }
    let image = std::fs::read(common::images("good").join("ijg-testorig.jpg")).unwrap();
    let (body, len) = infer_body(std::slice::from_ref(&image), json!({"classification": 1}));
    assert_eq!(
        infer(&server, "resnet50_image", &body, len).await.status,
        200
    );
    let (body, len) = infer_body(&[image.clone(), image], json!({"classification": 1}));
    let refused = infer(&server, "resnet50_image", &body, len).await;
    assert_eq!(refused.status, 400);
    assert!(String::from_utf8_lossy(&refused.body).contains("max_batch_size 1"));
    server.stop().await.unwrap();
}

/// `PREPROCESS`, `?preprocess=` on `/predict` and the v2 request parameter `preprocess` choose
/// how a JPEG decodes; `Server-Timing` and `model_info` say which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decode_mode_is_chosen_per_server_and_per_request() {
    let photo = common::repo().join("server/tests/data/large/landscape-2048x1536.jpg");
    let server = TestServer::start(&[("PREPROCESS", "draft")]).await;
    let timing = |r: &common::Reply| r.headers["server-timing"].clone();
    let r = server.predict_file(&photo, "").await.unwrap();
    assert!(
        timing(&r).contains("decode-mode;desc=\"draft 1/2\""),
        "{}",
        timing(&r)
    );
    let draft_top = r.predictions()[0].0;
    let r = server
        .predict_file(&photo, "preprocess=exact")
        .await
        .unwrap();
    assert!(
        timing(&r).contains("decode-mode;desc=\"exact\""),
        "{}",
        timing(&r)
    );
    // A small image: draft has nothing to reduce.
    let small = common::images("good").join("ijg-testorig.jpg");
    let r = server
        .predict_file(&small, "preprocess=draft")
        .await
        .unwrap();
    assert!(timing(&r).contains("\"draft 1/1\""), "{}", timing(&r));
    let r = server
        .predict_file(&small, "preprocess=fast")
        .await
        .unwrap();
    assert_eq!(
        (r.status, common::error_code(&r).as_str()),
        (400, "invalid_parameter")
    );
    let metrics = String::from_utf8(server.get("/metrics").await.unwrap().body).unwrap();
    assert!(
        metrics.contains("preprocess=\"draft\""),
        "model_info names the default"
    );

    // The v2 image model: the request parameter, over the server's default.
    let image = std::fs::read(&photo).unwrap();
    let ask = |mode: &str| {
        let (body, n) = infer_body(std::slice::from_ref(&image), json!({"classification": 1}));
        let mut head: Value = serde_json::from_slice(&body[..n]).unwrap();
        head["parameters"] = json!({ "preprocess": mode });
        let head = head.to_string();
        let mut out = head.clone().into_bytes();
        out.extend_from_slice(&body[n..]);
        (out, head.len())
    };
    for mode in ["exact", "draft"] {
        let (body, n) = ask(mode);
        let r = infer(&server, "resnet50_image", &body, n).await;
        assert_eq!(
            r.status,
            200,
            "{mode}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let top = r.json()["outputs"][0]["data"][0]
            .as_str()
            .unwrap()
            .to_owned();
        eprintln!("v2 {mode}: {top}");
        if mode == "draft" {
            assert_eq!(top.split(':').nth(1).unwrap(), draft_top.to_string());
        }
    }
    let (body, n) = ask("fast");
    let r = infer(&server, "resnet50_image", &body, n).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("preprocess"));
    server.stop().await.unwrap();
}
