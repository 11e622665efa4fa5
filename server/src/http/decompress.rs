//! Request bodies sent with `Content-Encoding: gzip` (or `deflate`), decoded with the body limit
//! applied to the decoded bytes *while* decoding.
//!
//! actix-web can decode request bodies itself, inside its JSON and bytes extractors, but it
//! inflates each received chunk whole before the extractor checks the limit: one 128 KiB chunk of a
//! gzip bomb becomes 128 MiB in memory first. This middleware step decodes instead, in steps of at
//! most a few tens of KiB, stops with [`PayloadError::Overflow`] (413) as soon as the decoded size
//! passes the limit, and hands the extractors a plain body (the `Content-Encoding` header removed,
//! so they do not decode it again). The compressed size is bounded too, so a huge gzip header
//! (file name, comment, extra field) cannot be buffered either.

use actix_web::HttpMessage;
use actix_web::dev::{Payload, ServiceRequest};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::web::Bytes;
use flate2::write::{GzDecoder, ZlibDecoder};
use futures_util::stream::Stream;
use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

/// How many compressed bytes beyond the limit are tolerated (gzip framing, incompressible data).
const INPUT_SLACK: usize = 64 * 1024;

/// A request's `Content-Encoding`, as far as bodies go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    Identity,
    Gzip,
    Deflate,
}

/// Reads every `Content-Encoding` header of a request: one supported coding (gzip, x-gzip,
/// deflate), optionally with `identity`. Stacked codings (`gzip, gzip`) and anything else are
/// refused with a message for the client.
pub fn body_encoding(headers: &header::HeaderMap) -> Result<BodyEncoding, String> {
    let mut codings = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let text = value
            .to_str()
            .map_err(|_| "Content-Encoding is not ASCII".to_owned())?;
        codings.extend(
            text.split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty() && c != "identity"),
        );
    }
    match codings.as_slice() {
        [] => Ok(BodyEncoding::Identity),
        [one] if one == "gzip" || one == "x-gzip" => Ok(BodyEncoding::Gzip),
        [one] if one == "deflate" => Ok(BodyEncoding::Deflate),
        [one] => Err(format!(
            "unsupported Content-Encoding {one:?}: send gzip, deflate or identity"
        )),
        _ => Err("only one Content-Encoding may be applied to a request body".to_owned()),
    }
}

/// Replaces a compressed request body by its decoded stream, limited to `limit` decoded bytes.
/// An unsupported encoding becomes a body that fails to read (400 from the extractor).
pub fn decode_request_body(req: &mut ServiceRequest, limit: usize) {
    if !req.headers().contains_key(header::CONTENT_ENCODING) {
        return;
    }
    let encoding = body_encoding(req.headers());
    // The extractors must see a plain body of unknown length.
    req.headers_mut().remove(header::CONTENT_ENCODING);
    req.headers_mut().remove(header::CONTENT_LENGTH);
    let payload = req.take_payload();
    let decoded: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = match encoding {
        Ok(BodyEncoding::Identity) => Box::pin(payload),
        Ok(BodyEncoding::Gzip) => Box::pin(Inflate::new(
            payload,
            Decoder::Gzip(Box::new(GzDecoder::new(Vec::new()))),
            limit,
        )),
        Ok(BodyEncoding::Deflate) => Box::pin(Inflate::new(
            payload,
            Decoder::Deflate(Box::new(ZlibDecoder::new(Vec::new()))),
            limit,
        )),
        Err(message) => Box::pin(futures_util::stream::once(std::future::ready(Err(
            PayloadError::Io(io::Error::new(io::ErrorKind::InvalidData, message)),
        )))),
    };
    req.set_payload(Payload::from(decoded));
}

enum Decoder {
    Gzip(Box<GzDecoder<Vec<u8>>>),
    Deflate(Box<ZlibDecoder<Vec<u8>>>),
}

impl Decoder {
    /// Feeds some of `input`; returns how much was consumed. Each call decodes at most one
    /// internal buffer (32 KiB) of output, whatever the input expands to.
    fn write(&mut self, input: &[u8]) -> io::Result<usize> {
        match self {
            Self::Gzip(d) => d.write(input),
            Self::Deflate(d) => d.write(input),
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        match self {
            Self::Gzip(d) => d.try_finish(),
            Self::Deflate(d) => d.try_finish(),
        }
    }

    /// The output decoded so far and not yet taken.
    fn take_output(&mut self) -> Vec<u8> {
        let out = match self {
            Self::Gzip(d) => d.get_mut(),
            Self::Deflate(d) => d.get_mut(),
        };
        std::mem::take(out)
    }
}

/// The decoded body of a compressed payload, in bounded pieces, failing once it passes `limit`.
pub struct Inflate<S> {
    input: S,
    decoder: Decoder,
    pending: Bytes,
    read: usize,
    decoded: usize,
    limit: usize,
    done: bool,
}

impl<S> Inflate<S> {
    fn new(input: S, decoder: Decoder, limit: usize) -> Self {
        Self {
            input,
            decoder,
            pending: Bytes::new(),
            read: 0,
            decoded: 0,
            limit,
            done: false,
        }
    }

    /// Counts decoded bytes against the limit.
    fn emit(&mut self, out: Vec<u8>) -> Option<Result<Bytes, PayloadError>> {
        self.decoded += out.len();
        if self.decoded > self.limit {
            return Some(self.fail(PayloadError::Overflow));
        }
        (!out.is_empty()).then(|| Ok(Bytes::from(out)))
    }

    fn fail(&mut self, err: PayloadError) -> Result<Bytes, PayloadError> {
        self.done = true;
        self.pending = Bytes::new();
        Err(err)
    }
}

fn corrupt(err: io::Error) -> PayloadError {
    PayloadError::Io(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the compressed body is corrupt: {err}"),
    ))
}

impl<S> Stream for Inflate<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if !this.pending.is_empty() {
                let consumed = match this.decoder.write(&this.pending) {
                    Ok(n) => n,
                    Err(e) => return Poll::Ready(Some(this.fail(corrupt(e)))),
                };
                this.pending = this.pending.slice(consumed..);
                let out = this.decoder.take_output();
                if consumed == 0 && out.is_empty() {
                    return Poll::Ready(Some(this.fail(corrupt(io::Error::other(
                        "data after the end of the compressed stream",
                    )))));
                }
                if let Some(item) = this.emit(out) {
                    return Poll::Ready(Some(item));
                }
                continue;
            }
            match Pin::new(&mut this.input).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    this.read += chunk.len();
                    if this.read > this.limit.saturating_add(INPUT_SLACK) {
                        return Poll::Ready(Some(this.fail(PayloadError::Overflow)));
                    }
                    this.pending = chunk;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(this.fail(e))),
                Poll::Ready(None) => {
                    if let Err(e) = this.decoder.finish() {
                        return Poll::Ready(Some(this.fail(corrupt(e))));
                    }
                    this.done = true;
                    let out = this.decoder.take_output();
                    return Poll::Ready(this.emit(out));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderMap, HeaderValue};
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use futures_util::StreamExt;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// `mib` MiB of `byte`, gzip-compressed (about 1 KiB per MiB), built from one compressed
    /// MiB repeated: a bomb costs nothing to make. Its trailer is not checked (it never gets there).
    fn gzip_bomb(byte: u8, mib: usize) -> Vec<u8> {
        use flate2::{Compress, FlushCompress};
        let mut raw = Compress::new(Compression::best(), false);
        let mut block = Vec::with_capacity(64 * 1024);
        raw.compress_vec(&vec![byte; 1 << 20], &mut block, FlushCompress::Full)
            .unwrap();
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        for _ in 0..mib {
            out.extend_from_slice(&block);
        }
        out.extend_from_slice(&[3, 0]); // a final, empty fixed-Huffman block
        out.extend_from_slice(&[0; 8]);
        out
    }

    fn chunks(data: &[u8], size: usize) -> impl Stream<Item = Result<Bytes, PayloadError>> + Unpin {
        let parts: Vec<_> = data.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        futures_util::stream::iter(parts)
    }

    fn gz(
        limit: usize,
        body: &[u8],
        chunk: usize,
    ) -> Inflate<impl Stream<Item = Result<Bytes, PayloadError>> + Unpin> {
        Inflate::new(
            chunks(body, chunk),
            Decoder::Gzip(Box::new(GzDecoder::new(Vec::new()))),
            limit,
        )
    }

    /// Every piece the stream yields, or the error that ended it.
    async fn drain(
        mut s: impl Stream<Item = Result<Bytes, PayloadError>> + Unpin,
    ) -> (Vec<usize>, Option<PayloadError>) {
        let mut sizes = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => sizes.push(b.len()),
                Err(e) => return (sizes, Some(e)),
            }
        }
        (sizes, None)
    }

    #[actix_web::test]
    async fn decodes_a_body_under_the_limit_whatever_the_chunking() {
        let text: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let body = gzip(&text);
        for chunk in [1, 7, 4096, 1 << 20] {
            let mut out = Vec::new();
            let mut s = gz(text.len(), &body, chunk);
            while let Some(item) = s.next().await {
                out.extend_from_slice(&item.unwrap());
            }
            assert_eq!(out, text, "chunk size {chunk}");
        }
    }

    #[actix_web::test]
    async fn a_bomb_stops_at_the_limit_in_small_pieces() {
        // 1 GiB of zeros: about 1 MiB compressed.
        let bomb = gzip_bomb(0, 1024);
        assert!(bomb.len() < 2 << 20, "{}", bomb.len());
        let limit = 8 << 20;
        // Whole (one chunk) and as actix hands it over (up to 128 KiB at a time).
        for chunk in [bomb.len(), 128 * 1024] {
            let (sizes, err) = drain(gz(limit, &bomb, chunk)).await;
            assert!(matches!(err, Some(PayloadError::Overflow)), "{err:?}");
            let largest = sizes.iter().copied().max().unwrap_or(0);
            assert!(largest <= 64 * 1024, "a decoded piece of {largest} bytes");
            let total: usize = sizes.iter().sum();
            assert!(total <= limit, "{total} bytes decoded before stopping");
        }
    }

    #[actix_web::test]
    async fn exactly_the_limit_passes_one_byte_more_does_not() {
        let limit = 100_000;
        let (_, err) = drain(gz(limit, &gzip(&vec![b'['; limit]), 1000)).await;
        assert!(err.is_none(), "{err:?}");
        let (_, err) = drain(gz(limit, &gzip(&vec![b'['; limit + 1]), 1000)).await;
        assert!(matches!(err, Some(PayloadError::Overflow)), "{err:?}");
    }

    #[actix_web::test]
    async fn corrupt_truncated_and_trailing_data_fail() {
        let good = gzip(b"{\"a\": 1}");
        let truncated = &good[..good.len() - 4];
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"more");
        let mut flipped = good.clone();
        flipped[12] ^= 0xff;
        for (name, body) in [
            ("not gzip", &b"{\"a\": 1}"[..]),
            ("truncated", truncated),
            ("trailing", &trailing),
            ("flipped", &flipped),
            ("empty", b""),
        ] {
            let (_, err) = drain(gz(1000, body, 3)).await;
            assert!(matches!(err, Some(PayloadError::Io(_))), "{name}: {err:?}");
        }
    }

    #[actix_web::test]
    async fn input_that_decodes_to_nothing_is_bounded_too() {
        // A gzip header, then empty stored deflate blocks (5 bytes each, no output) forever:
        // only the compressed size can stop it.
        let mut body = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        for _ in 0..60_000 {
            body.extend_from_slice(&[0, 0, 0, 0xff, 0xff]);
        }
        let (sizes, err) = drain(gz(100_000, &body, 16 * 1024)).await;
        assert!(matches!(err, Some(PayloadError::Overflow)), "{err:?}");
        assert!(sizes.is_empty());
        // A header field that never ends is refused by the gzip parser itself.
        let mut body = vec![0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 0xff];
        body.extend(std::iter::repeat_n(b'a', 300_000));
        let (_, err) = drain(gz(100_000, &body, 16 * 1024)).await;
        assert!(
            matches!(err, Some(PayloadError::Overflow | PayloadError::Io(_))),
            "{err:?}"
        );
    }

    #[test]
    fn encodings() {
        let parse = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::CONTENT_ENCODING, HeaderValue::from_str(v).unwrap());
            }
            body_encoding(&h)
        };
        assert_eq!(parse(&[]), Ok(BodyEncoding::Identity));
        assert_eq!(parse(&["identity"]), Ok(BodyEncoding::Identity));
        assert_eq!(parse(&["GZIP"]), Ok(BodyEncoding::Gzip));
        assert_eq!(parse(&["x-gzip"]), Ok(BodyEncoding::Gzip));
        assert_eq!(parse(&["gzip, identity"]), Ok(BodyEncoding::Gzip));
        assert_eq!(parse(&["deflate"]), Ok(BodyEncoding::Deflate));
        assert!(parse(&["br"]).is_err());
        assert!(parse(&["gzip, gzip"]).is_err());
        assert!(parse(&["gzip", "deflate"]).is_err());
    }
}
