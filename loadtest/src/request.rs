//! What to send: the URL, method, headers and a cycle of prebuilt bodies.
//!
//! Bodies are built once before the run (files read, JPEGs generated, multipart framed), so a
//! request costs the sender one reference-counted clone, not an allocation or a copy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};

use crate::LoadError;

/// The multipart boundary; it cannot occur in the framing we write, and a JPEG that contained it
/// would only confuse a server that ignores `Content-Length`-free multipart rules.
const BOUNDARY: &str = "loadtest-7d9f2c0b41e5a3";

/// How image bodies are framed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// `multipart/form-data` with the image in the named field (the gateway's `file`).
    Multipart(String),
    /// The raw bytes with an `image/*` content type guessed from the file name.
    Raw,
}

/// Where request bodies come from.
#[derive(Clone, Debug)]
pub enum BodySource {
    /// No body.
    None,
    /// One file, sent raw with the given content type (or none).
    File(PathBuf, Option<String>),
    /// Every image file in a folder, in name order, cycled.
    Images(PathBuf, BodyFormat),
    /// `count` generated JPEGs of `width`×`height` (seeded, photo-like detail), cycled.
    Generated {
        /// How many distinct images.
        count: usize,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Framing.
        format: BodyFormat,
    },
}

/// One prebuilt body.
#[derive(Clone, Debug)]
struct Body {
    bytes: Bytes,
    content_type: Option<HeaderValue>,
}

/// A fully prepared request target: everything but the per-request clone.
#[derive(Debug)]
pub struct Target {
    uri: Uri,
    /// `host:port` to connect to.
    pub addr: String,
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    bodies: Vec<Body>,
    next: AtomicUsize,
}

impl Target {
    /// Prepares a target. `url` must be `http://host[:port]/path`; `headers` are `Name: value`.
    pub fn new(
        url: &str,
        method: &str,
        headers: &[String],
        source: &BodySource,
    ) -> Result<Self, LoadError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| LoadError::invalid("--url", format!("{url:?}: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(LoadError::invalid(
                "--url",
                "only http:// URLs are supported (no TLS)",
            ));
        }
        let host = uri
            .host()
            .ok_or_else(|| LoadError::invalid("--url", "no host"))?;
        let addr = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| LoadError::invalid("--method", format!("{method:?}")))?;
        let mut parsed = Vec::new();
        for h in headers {
            let (name, value) = h.split_once(':').ok_or_else(|| {
                LoadError::invalid("--header", format!("{h:?} is not Name: value"))
            })?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|e| LoadError::invalid("--header", format!("{name:?}: {e}")))?;
            let value = HeaderValue::from_str(value.trim())
                .map_err(|e| LoadError::invalid("--header", format!("{value:?}: {e}")))?;
            parsed.push((name, value));
        }
        let host_header = uri.authority().map(|a| a.as_str()).unwrap_or(host);
        parsed.push((
            HOST,
            HeaderValue::from_str(host_header).expect("authority is a valid header"),
        ));
        let bodies = build_bodies(source)?;
        Ok(Target {
            uri,
            addr,
            method,
            headers: parsed,
            bodies,
            next: AtomicUsize::new(0),
        })
    }

    /// The URL's `scheme://authority`, to derive e.g. the metrics URL.
    pub fn origin(&self) -> String {
        format!(
            "http://{}",
            self.uri
                .authority()
                .map(|a| a.as_str())
                .unwrap_or(&self.addr)
        )
    }

    /// How many distinct bodies are cycled.
    pub fn body_count(&self) -> usize {
        self.bodies.len()
    }

    /// The next request of the cycle.
    pub fn request(&self) -> Request<Full<Bytes>> {
        let path = self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut builder = Request::builder().method(self.method.clone()).uri(path);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let body = if self.bodies.is_empty() {
            Bytes::new()
        } else {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.bodies.len();
            let body = &self.bodies[i];
            if let Some(ct) = &body.content_type {
                builder = builder.header(CONTENT_TYPE, ct);
            }
            body.bytes.clone()
        };
        builder
            .body(Full::new(body))
            .expect("method, path and headers were validated")
    }
}

fn build_bodies(source: &BodySource) -> Result<Vec<Body>, LoadError> {
    match source {
        BodySource::None => Ok(Vec::new()),
        BodySource::File(path, content_type) => {
            let bytes = read(path)?;
            let content_type = content_type
                .as_deref()
                .map(HeaderValue::from_str)
                .transpose()
                .map_err(|e| LoadError::invalid("--content-type", e.to_string()))?;
            Ok(vec![Body {
                bytes: bytes.into(),
                content_type,
            }])
        }
        BodySource::Images(dir, format) => {
            let files = image_files(dir)?;
            files
                .iter()
                .map(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("image");
                    Ok(frame(read(p)?, name, format))
                })
                .collect()
        }
        BodySource::Generated {
            count,
            width,
            height,
            format,
        } => (0..*count)
            .map(|i| {
                let jpeg = generate_jpeg(*width, *height, i as u64)?;
                Ok(frame(jpeg, &format!("generated-{i}.jpg"), format))
            })
            .collect(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The image files of `dir` (by extension), sorted by name; an error if there are none.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && image_content_type(p).is_some())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LoadError::invalid(
            "--images",
            format!(
                "no .jpg/.jpeg/.png/.webp/.gif/.bmp files in {}",
                dir.display()
            ),
        ));
    }
    Ok(files)
}

/// The `image/*` type for a file name, by extension.
pub fn image_content_type(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        _ => return None,
    })
}

/// Frames image bytes as multipart or raw.
fn frame(bytes: Vec<u8>, name: &str, format: &BodyFormat) -> Body {
    let content_type = image_content_type(Path::new(name)).unwrap_or("application/octet-stream");
    match format {
        BodyFormat::Raw => Body {
            bytes: bytes.into(),
            content_type: Some(HeaderValue::from_static(content_type)),
        },
        BodyFormat::Multipart(field) => {
            let name = name.replace(['"', '\r', '\n'], "_");
            let mut out = Vec::with_capacity(bytes.len() + 256);
            out.extend_from_slice(
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; \
                     filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n"
                )
                .as_bytes(),
            );
            out.extend_from_slice(&bytes);
            out.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
            Body {
                bytes: out.into(),
                content_type: Some(
                    HeaderValue::from_str(&format!("multipart/form-data; boundary={BOUNDARY}"))
                        .expect("ASCII"),
                ),
            }
        }
    }
}

/// A seeded, photo-like JPEG (smooth gradients, blobs and fine noise, quality 90), so decoding it
/// costs about what a real photo of that size costs.
pub fn generate_jpeg(width: u32, height: u32, seed: u64) -> Result<Vec<u8>, LoadError> {
    if width == 0 || height == 0 || u64::from(width) * u64::from(height) > 100_000_000 {
        return Err(LoadError::invalid(
            "--image-size",
            format!("{width}x{height} is out of range"),
        ));
    }
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (cx, cy) = (
        (next() % 1000) as f32 / 1000.0,
        (next() % 1000) as f32 / 1000.0,
    );
    let phase = (next() % 628) as f32 / 100.0;
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            let (u, v) = (x as f32 / width as f32, y as f32 / height as f32);
            let d = ((u - cx).powi(2) + (v - cy).powi(2)).sqrt();
            let noise = (next() % 24) as f32;
            let r = 128.0 + 100.0 * (d * 12.0 + phase).sin() + noise;
            let g = 255.0 * u * (1.0 - v) + noise;
            let b = 128.0 + 90.0 * ((u + v) * 7.0 - phase).cos() + noise;
            pixels.extend([r, g, b].map(|c| c.clamp(0.0, 255.0) as u8));
        }
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode(&pixels, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| LoadError::Generate(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_framing_carries_field_name_and_bytes() {
        let body = frame(
            b"JPEGDATA".to_vec(),
            "a.jpg",
            &BodyFormat::Multipart("file".into()),
        );
        let text = String::from_utf8(body.bytes.to_vec()).unwrap();
        assert!(text.starts_with(&format!("--{BOUNDARY}\r\n")));
        assert!(text.contains("name=\"file\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg"));
        assert!(text.ends_with(&format!("\r\n\r\nJPEGDATA\r\n--{BOUNDARY}--\r\n")));
        assert!(body
            .content_type
            .unwrap()
            .to_str()
            .unwrap()
            .contains(BOUNDARY));
    }

    #[test]
    fn generated_jpegs_are_valid_deterministic_and_distinct() {
        let a = generate_jpeg(64, 48, 1).unwrap();
        assert_eq!(a, generate_jpeg(64, 48, 1).unwrap());
        assert_ne!(a, generate_jpeg(64, 48, 2).unwrap());
        let img = image::load_from_memory(&a).unwrap();
        assert_eq!((img.width(), img.height()), (64, 48));
    }

    #[test]
    fn requests_cycle_bodies_and_set_host() {
        let dir = std::env::temp_dir().join(format!("loadtest-req-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.png"), b"PNG").unwrap();
        std::fs::write(dir.join("a.jpg"), b"JPG").unwrap();
        std::fs::write(dir.join("notes.txt"), b"skip").unwrap();
        let source = BodySource::Images(dir.clone(), BodyFormat::Raw);
        let t = Target::new("http://127.0.0.1:9/predict?top_k=1", "POST", &[], &source).unwrap();
        assert_eq!(t.body_count(), 2);
        let types: Vec<_> = (0..3)
            .map(|_| {
                t.request().headers()[CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(types, ["image/jpeg", "image/png", "image/jpeg"]);
        let req = t.request();
        assert_eq!(req.uri(), "/predict?top_k=1");
        assert_eq!(req.headers()[HOST], "127.0.0.1:9");
        std::fs::remove_dir_all(dir).unwrap();
        assert!(Target::new("https://x/", "GET", &[], &BodySource::None).is_err());
        assert!(Target::new("http://x/", "GET", &["bad".into()], &BodySource::None).is_err());
    }
}
