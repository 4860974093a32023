//! Test harness: the real server in-process on 127.0.0.1:0, and a minimal HTTP/1.1 client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `testdata/images/<dir>` of the repository.
pub fn images(dir: &str) -> PathBuf {
    let p = repo().join("testdata/images").join(dir);
    assert!(
        p.is_dir(),
        "test images not found at {} (testdata/ of the repository)",
        p.display()
    );
    p
}

/// Every file in an image folder, sorted.
pub fn files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(images(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("README")
        })
        .collect();
    v.sort();
    v
}

/// A server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), gateway::ServeError>>,
}

/// Where test servers keep generated and quantised models.
pub fn cache_dir() -> PathBuf {
    repo().join(".cache/models")
}

/// `tests/data/golden-top1.tsv`: file → (class id, probability, probability gap to the second)
/// of the built-in model.
pub fn golden() -> std::collections::HashMap<String, (u64, f64, f64)> {
    let text = std::fs::read_to_string(repo().join("server/tests/data/golden-top1.tsv"))
        .expect("golden answers");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].to_string(),
                (
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                ),
            )
        })
        .collect()
}

/// The built-in model's file, generated first if absent (a "user's model" for tests).
pub fn builtin_model_path() -> PathBuf {
    models::ensure_builtin(&cache_dir(), models::DEFAULT_SEED, 2).expect("the built-in model")
}

/// Settings every test server gets, overridable by `vars`.
pub fn config(vars: &[(&str, &str)]) -> gateway::Config {
    let mut map: HashMap<String, String> = HashMap::new();
    let cache = cache_dir();
    let dylib =
        std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH (set by .cargo/config.toml)");
    for (k, v) in [
        ("MODEL_CACHE_DIR", cache.to_str().unwrap()),
        ("ORT_DYLIB_PATH", dylib.as_str()),
        ("ENGINE_THREADS", "2"),
        ("DECODE_THREADS", "2"),
        ("GRACEFUL_SHUTDOWN_TIMEOUT", "10"),
    ] {
        map.insert(k.into(), v.into());
    }
    for (k, v) in vars {
        map.insert(k.to_string(), v.to_string());
    }
    gateway::Config::from_lookup(|k| map.get(k).cloned()).expect("valid test config")
}

impl TestServer {
    /// Starts a server and waits until `/ready` answers 200.
    pub async fn start(vars: &[(&str, &str)]) -> Self {
        Self::start_with(vars, gateway::Hooks::default()).await
    }

    /// [`TestServer::start`] with test hooks (e.g. a fault-injecting backend).
    pub async fn start_with(vars: &[(&str, &str)], hooks: gateway::Hooks) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(gateway::run_with(config(vars), listener, shutdown, hooks));
        let server = Self {
            addr,
            stop: Some(stop),
            task,
        };
        let start = Instant::now();
        loop {
            if let Ok(r) = server.get("/ready").await {
                if r.status == 200 {
                    return server;
                }
            }
            assert!(!server.task.is_finished(), "server exited while starting");
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "server not ready in 180 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Triggers shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), gateway::ServeError> {
        self.stop.take().map(|s| s.send(()));
        self.task.await.unwrap()
    }

    pub fn trigger_stop(&mut self) {
        self.stop.take().map(|s| s.send(()));
    }

    pub async fn get(&self, path: &str) -> std::io::Result<Reply> {
        request(self.addr, "GET", path, &[], &[]).await
    }

    /// `POST /predict` as multipart field `file`.
    pub async fn predict_file(
        &self,
        path: &std::path::Path,
        query: &str,
    ) -> std::io::Result<Reply> {
        predict_multipart(self.addr, &std::fs::read(path).unwrap(), query).await
    }
}

/// `bytes` as the multipart field `file`: the content type and the body.
pub fn multipart(bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----gatewaytestboundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"img\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// `POST /predict?query` with `bytes` as the multipart field `file`.
pub async fn predict_multipart(
    addr: SocketAddr,
    bytes: &[u8],
    query: &str,
) -> std::io::Result<Reply> {
    let (ct, body) = multipart(bytes);
    let path = if query.is_empty() {
        "/predict".to_string()
    } else {
        format!("/predict?{query}")
    };
    request(addr, "POST", &path, &[("content-type", &ct)], &body).await
}

/// A parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// `(class_id, probability)` of each prediction.
    pub fn predictions(&self) -> Vec<(u64, f64)> {
        let v = self.json();
        v["predictions"]
            .as_array()
            .unwrap_or_else(|| panic!("no predictions in {v}"))
            .iter()
            .map(|p| {
                (
                    p["class_id"].as_u64().unwrap(),
                    p["probability"].as_f64().unwrap(),
                )
            })
            .collect()
    }

    /// Batch size reported in `Server-Timing`.
    pub fn batch_size(&self) -> usize {
        let st = &self.headers["server-timing"];
        let i = st.find("size ").expect("batch size in server-timing") + 5;
        st[i..]
            .trim_end_matches('"')
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// The head of a `Connection: close` request whose body is `content_length` bytes.
pub fn head(method: &str, path: &str, headers: &[(&str, &str)], content_length: usize) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: {content_length}\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// One request on a fresh connection (`Connection: close`).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(addr).await?;
    let head = head(method, path, headers, body.len());
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse(&raw).ok_or_else(|| {
        std::io::Error::other(format!(
            "unparsable response: {:?}",
            String::from_utf8_lossy(&raw)
        ))
    })
}

/// Parses one raw HTTP/1.1 response (`Connection: close`).
pub fn parse(raw: &[u8]) -> Option<Reply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        body = dechunk(&body)?;
    }
    Some(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).ok()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(line_end + 2..line_end + 2 + size)?);
        b = &b[line_end + 4 + size..];
    }
}

/// Asserts the body is the contract's JSON error and returns its code.
pub fn error_code(r: &Reply) -> String {
    let v = r.json();
    let message = v["error"]["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "error without message: {v}");
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {v}"))
        .to_string()
}

/// The real binary, started on 127.0.0.1:0 with JSON logs and run until it logs "ready".
pub struct Binary {
    /// The process (stdout is read here; the caller may have piped stderr).
    pub child: std::process::Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its log lines up to "ready".
    pub startup: Vec<String>,
    /// Collects its later log lines until it exits.
    pub rest: std::thread::JoinHandle<Vec<String>>,
}

/// Starts `inference-gateway` from the repository root with the built-in model's cache, after
/// `configure` has added its own settings, and waits (3 min at most) for it to be ready.
pub fn start_binary(configure: impl FnOnce(&mut std::process::Command)) -> Binary {
    use std::io::{BufRead, BufReader};
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_inference-gateway"));
    cmd.current_dir(repo())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .env("MODEL_CACHE_DIR", repo().join(".cache/models"))
        .stdout(std::process::Stdio::piped());
    configure(&mut cmd);
    let mut child = cmd.spawn().expect("binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut addr, mut startup) = (None, Vec::new());
    let start = Instant::now();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("json log lines");
        startup.push(line);
        match v["message"].as_str() {
            Some("listening") => addr = v["addr"].as_str().map(|a| a.parse().unwrap()),
            Some("ready") => break,
            _ => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "not ready in time"
        );
    }
    let addr = addr.expect("listening address logged");
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect());
    Binary {
        child,
        addr,
        startup,
        rest,
    }
}
