//! Small JSON answers gzip-compressed here, with one compressor per thread reused from answer to
//! answer.
//!
//! actix-web's `Compress` middleware builds a new deflate state for every response (~300 KiB,
//! zeroed, in freshly mapped pages) and hands every body over 1 KiB to a blocking thread. For a
//! push answer of a few KiB that cost more than the compression itself: 30 % of the server's
//! page faults during a push benchmark. Answers compressed here carry `Content-Encoding`, which
//! the middleware leaves alone; the large and streamed answers (pull pages, exports) stay with it.

use crate::error::AppError;
use actix_web::body::BoxBody;
use actix_web::http::header::{self, AcceptEncoding, Encoding, Header, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, Responder, ResponseError};
use flate2::{Compress, Compression, FlushCompress, Status};
use serde::Serialize;
use std::cell::RefCell;

thread_local! {
    static GZIP: RefCell<Option<Compress>> = const { RefCell::new(None) };
}

/// `data` as one gzip member, compressed by this thread's reusable compressor; `None` if deflate
/// refuses (it has no reason to: the answer then goes uncompressed, and the compressor is
/// dropped so that the next answer starts from a fresh one).
pub fn gzip(data: &[u8]) -> Option<Vec<u8>> {
    GZIP.with_borrow_mut(|slot| {
        let c = slot.get_or_insert_with(|| Compress::new_gzip(Compression::fast(), 15));
        c.reset();
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        loop {
            let read = usize::try_from(c.total_in()).ok()?;
            // Only a full output buffer stops deflate short: grow it and go on.
            match c.compress_vec(data.get(read..)?, &mut out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => return Some(out),
                Ok(Status::Ok | Status::BufError) => out.reserve(out.capacity().max(64)),
                Err(e) => {
                    tracing::warn!(error = %e, "gzip refused an answer; sent uncompressed");
                    *slot = None;
                    return None;
                }
            }
        }
    })
}

/// Whether the request's `Accept-Encoding` prefers gzip over no coding.
fn wants_gzip(req: &HttpRequest) -> bool {
    AcceptEncoding::parse(req)
        .ok()
        .and_then(|accept| accept.negotiate([Encoding::gzip(), Encoding::identity()].iter()))
        == Some(Encoding::gzip())
}

/// A JSON answer, gzip-compressed when the client asks for it.
pub struct PackedJson<T>(pub T);

impl<T: Serialize> Responder for PackedJson<T> {
    type Body = BoxBody;

    fn respond_to(self, req: &HttpRequest) -> HttpResponse {
        let json = match serde_json::to_vec(&self.0) {
            Ok(json) => json,
            Err(e) => {
                let e = AppError::Internal(format!("answer not serialisable: {e}"));
                return e.error_response();
            }
        };
        let mut res = HttpResponse::Ok();
        res.insert_header(header::ContentType::json())
            .insert_header((header::VARY, HeaderValue::from_static("accept-encoding")));
        match wants_gzip(req).then(|| gzip(&json)).flatten() {
            Some(packed) => res
                .insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")))
                .body(packed),
            None => res.body(json),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;
    use std::io::Read;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn the_reused_compressor_writes_whole_gzip_members() {
        // Incompressible data bigger than the first output guess, then small data, then empty.
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for data in [noise.as_slice(), b"{\"a\":1}", b"", noise.as_slice()] {
            assert_eq!(gunzip(&gzip(data).unwrap()), data);
        }
    }

    #[test]
    fn gzip_is_chosen_only_when_preferred() {
        let with = |accept: &str| {
            TestRequest::default()
                .insert_header((header::ACCEPT_ENCODING, accept))
                .to_http_request()
        };
        assert!(wants_gzip(&with("gzip")));
        assert!(wants_gzip(&with("br;q=0.5, gzip;q=1.0")));
        assert!(!wants_gzip(&with("identity")));
        assert!(!wants_gzip(&with("gzip;q=0")));
        assert!(!wants_gzip(&with("br")));
        assert!(!wants_gzip(&TestRequest::default().to_http_request()));
    }
}
