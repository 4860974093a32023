//! Hostile input against the real server: each case gets the right 4xx with the JSON error (or
//! the connection is cut by a timeout), nothing panics, and the server keeps serving others.

mod common;

use std::time::{Duration, Instant};

use common::{error_code, request, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(png: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
    let typed = [kind, data].concat();
    png.extend((data.len() as u32).to_be_bytes());
    png.extend(&typed);
    png.extend(crc32(&typed).to_be_bytes());
}

/// A ~90-byte PNG whose header claims `w`×`h` pixels, with a small valid IDAT (a zlib stream of
/// one stored block): a decompression bomb's calling card.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let ihdr = [
        w.to_be_bytes().as_slice(),
        &h.to_be_bytes(),
        &[8, 2, 0, 0, 0],
    ]
    .concat();
    let raw = [0u8; 16];
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    let mut idat = vec![0x78, 0x01, 0x01, 16, 0, !16u8, 0xff];
    idat.extend(raw);
    idat.extend(((b << 16) | a).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &idat);
    chunk(&mut png, b"IEND", &[]);
    png
}

fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let b = "hostileboundary";
    let mut body = Vec::new();
    for (name, data) in parts {
        body.extend(
            format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"x\"\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend(*data);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

/// What is sent, the headers, the body, and the status and code expected.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);

async fn still_serving(server: &TestServer) {
    let r = server
        .predict_file(&common::images("good").join("ijg-testorig.jpg"), "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "the server keeps serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_clear_4xx_answers() {
    let server = TestServer::start(&[
        ("MAX_BODY_BYTES", "1048576"),
        ("MAX_IMAGE_PIXELS", "40000000"),
    ])
    .await;
    let addr = server.addr;
    let jpeg = std::fs::read(common::images("good").join("ijg-testorig.jpg")).unwrap();
    let img = |ct: &'static str| vec![("content-type", ct)];
    let bomb = png_claiming(100_000, 100_000);
    let (ct_many, many) = multipart(&vec![("file", jpeg.as_slice()); 40]);
    let (ct_none, none) = multipart(&[("other", jpeg.as_slice()), ("also", b"x")]);
    let (ct_cut, mut cut) = multipart(&[("file", jpeg.as_slice())]);
    cut.truncate(cut.len() - 30);
    let mut garbage = vec![0u8; 4096];
    garbage
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i * 7919 % 251) as u8);
    let truncated = jpeg[..jpeg.len() / 3].to_vec();
    let cases: Vec<Case<'_>> = vec![
        (
            "pixel bomb PNG",
            img("image/png"),
            bomb,
            413,
            "image_too_large",
        ),
        (
            "40 files in one request",
            vec![("content-type", ct_many.as_str())],
            many,
            400,
            "invalid_multipart",
        ),
        (
            "no file part",
            vec![("content-type", ct_none.as_str())],
            none,
            400,
            "invalid_multipart",
        ),
        (
            "unterminated multipart",
            vec![("content-type", ct_cut.as_str())],
            cut,
            400,
            "invalid_multipart",
        ),
        (
            "garbage bytes",
            img("image/jpeg"),
            garbage,
            400,
            "invalid_image",
        ),
        (
            "truncated JPEG",
            img("image/jpeg"),
            truncated,
            400,
            "invalid_image",
        ),
        (
            "zero-length body",
            img("image/jpeg"),
            vec![],
            400,
            "empty_image",
        ),
        (
            "no content type",
            vec![],
            jpeg.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "text content type",
            img("text/plain"),
            jpeg.clone(),
            415,
            "unsupported_media_type",
        ),
    ];
    for (what, headers, body, status, code) in cases {
        let t = Instant::now();
        let r = request(addr, "POST", "/predict", &headers, &body)
            .await
            .unwrap();
        assert_eq!(
            (r.status, error_code(&r).as_str()),
            (status, code),
            "{what}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{what} answered at once"
        );
        still_serving(&server).await;
    }

    // A declared 20 MB body is refused from its Content-Length, before any of it is read.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /predict HTTP/1.1\r\nhost: t\r\ncontent-type: image/jpeg\r\ncontent-length: 20000000\r\n\r\n").await.unwrap();
    let mut head = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );

    // A chunked body with no length is cut off at the limit while streaming: the server answers
    // 413 having read about MAX_BODY_BYTES, not the 16 MB the client tries to send.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /predict HTTP/1.1\r\nhost: t\r\ncontent-type: image/jpeg\r\ntransfer-encoding: chunked\r\n\r\n").await.unwrap();
    let chunk = [b"10000\r\n".as_slice(), &vec![0xAB; 0x10000], b"\r\n"].concat();
    let mut sent = 0usize;
    for _ in 0..256 {
        if s.write_all(&chunk).await.is_err() {
            break;
        }
        sent += 0x10000;
    }
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut reply)).await;
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("HTTP/1.1 413"),
        "streamed oversize → 413, got {:?} after {sent} bytes",
        &text[..text.len().min(80)]
    );
    assert!(text.contains("body_too_large"));

    // Absurd headers: far too many of them.
    let many: Vec<(String, String)> = (0..300)
        .map(|i| (format!("x-h{i}"), "v".repeat(20)))
        .collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = request(addr, "GET", "/health", &refs, &[]).await;
    assert!(
        matches!(&r, Ok(r) if r.status == 431) || r.is_err(),
        "{r:?}"
    );
    still_serving(&server).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_without_holding_the_server() {
    let server = TestServer::start(&[("REQUEST_TIMEOUT", "2")]).await;
    let addr = server.addr;
    // Slowloris: headers that never end. hyper's header timeout (10 s) closes the connection.
    let slowloris = tokio::spawn(async move {
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nhost: t\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if s.write_all(b"x-slow: 1\r\n").await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(10), s.read(&mut buf)).await {
                Ok(Ok(_)) | Ok(Err(_)) => break, // closed, or an error status
                Err(_) => assert!(t.elapsed() < Duration::from_secs(20), "never cut off"),
            }
        }
        t.elapsed()
    });
    // Trickled body: declared 50 kB, one byte every 100 ms; REQUEST_TIMEOUT (2 s) ends it with 504.
    let trickle = tokio::spawn(async move {
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /predict HTTP/1.1\r\nhost: t\r\ncontent-type: image/jpeg\r\ncontent-length: 50000\r\n\r\n").await.unwrap();
        let mut reply = Vec::new();
        for _ in 0..200 {
            if s.write_all(b"\xff").await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(100), s.read_buf(&mut reply)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) if reply.windows(4).any(|w| w == b"\r\n\r\n") => break,
                _ => {}
            }
        }
        (t.elapsed(), String::from_utf8_lossy(&reply).to_string())
    });
    // Meanwhile others are served normally.
    for _ in 0..5 {
        let t = Instant::now();
        still_serving(&server).await;
        assert!(t.elapsed() < Duration::from_secs(2));
    }
    let (took, reply) = trickle.await.unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 504"),
        "trickled body → 504: {reply:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "cut at the 2 s deadline, took {took:?}"
    );
    let took = slowloris.await.unwrap();
    eprintln!("slowloris cut off after {took:?}, trickled body after the deadline");
    assert!(
        took < Duration::from_secs(15),
        "slowloris cut off after {took:?}"
    );
    still_serving(&server).await;
    server.stop().await.unwrap();
}
