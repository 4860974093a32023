//! Request bodies, for both transports: read whole into one buffer of the declared size, each
//! chunk copied in and let go as it comes (the transport's read buffers are not held until the
//! end), refused past a byte limit. Deadlines are the caller's.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;

use crate::error::ApiError;

/// The whole of `body`, at most `limit` bytes; `capacity` (a declared length, or 0) is reserved
/// once bytes arrive, so a client that declares a size and sends nothing holds none.
pub(crate) async fn read_whole<B>(body: B, limit: usize, capacity: usize) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let e = e.into();
            ApiError::bad_request(
                "body_read_failed",
                format!("the request body could not be read: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ApiError::BodyTooLarge { limit });
            }
            if buf.capacity() == 0 {
                buf.reserve(capacity.max(data.len()));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    #[tokio::test]
    async fn chunks_are_joined_and_the_limit_refuses() {
        let chunks = ["ab", "cd", "e"]
            .map(|s| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(s))));
        let body = StreamBody::new(futures_util::stream::iter(chunks));
        assert_eq!(read_whole(body, 5, 0).await.unwrap(), "abcde");
        let over = read_whole(Full::new(Bytes::from("abcdef")), 5, 6).await;
        assert!(matches!(over, Err(ApiError::BodyTooLarge { limit: 5 })));
    }
}
