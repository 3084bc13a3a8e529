//! The request size limit of every service: a request body whose gRPC message announces more
//! than the limit fails with RESOURCE_EXHAUSTED (gRPC's code for "too big"; tonic's own check
//! answers OUT_OF_RANGE) as soon as the 5-byte message header arrives, before the message is
//! buffered. The error is a [`tonic::Status`] body error, which tonic hands to the handler's
//! decoding as that status.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf as _, Bytes};
use http_body::{Body, Frame, SizeHint};
use tonic::Status;

/// gRPC message header: a compression flag byte and a big-endian u32 length.
const HEADER_LEN: usize = 5;

/// Where the parser is within the stream of length-prefixed messages.
#[derive(Clone, Copy, Debug)]
enum State {
    /// Reading a header; `have` of its bytes are in `header`.
    Header {
        have: usize,
        header: [u8; HEADER_LEN],
    },
    /// Skipping the rest of a message body.
    Body { remaining: usize },
    /// The limit was exceeded and reported: the stream is over.
    Failed,
}

/// A request body that fails once a message longer than `limit` is announced.
pub struct MessageLimit<B> {
    inner: B,
    limit: usize,
    state: State,
}

impl<B> MessageLimit<B> {
    /// Wraps `inner`, allowing messages of at most `limit` bytes.
    pub fn new(inner: B, limit: usize) -> Self {
        Self {
            inner,
            limit,
            state: State::Header {
                have: 0,
                header: [0; HEADER_LEN],
            },
        }
    }

    /// Follows the message framing through `chunk`; the announced length of a message that is
    /// too long, if one starts in it.
    fn scan(&mut self, mut chunk: &[u8]) -> Option<usize> {
        while !chunk.is_empty() {
            match &mut self.state {
                State::Header { have, header } => {
                    let take = (HEADER_LEN - *have).min(chunk.len());
                    header[*have..*have + take].copy_from_slice(&chunk[..take]);
                    *have += take;
                    chunk.advance(take);
                    if *have == HEADER_LEN {
                        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]])
                            as usize;
                        if len > self.limit {
                            self.state = State::Failed;
                            return Some(len);
                        }
                        self.state = if len == 0 {
                            State::Header {
                                have: 0,
                                header: [0; HEADER_LEN],
                            }
                        } else {
                            State::Body { remaining: len }
                        };
                    }
                }
                State::Body { remaining } => {
                    let take = (*remaining).min(chunk.len());
                    *remaining -= take;
                    chunk.advance(take);
                    if *remaining == 0 {
                        self.state = State::Header {
                            have: 0,
                            header: [0; HEADER_LEN],
                        };
                    }
                }
                State::Failed => return None,
            }
        }
        None
    }
}

impl<B> Body for MessageLimit<B>
where
    B: Body<Data = Bytes, Error = Status> + Unpin,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if matches!(self.state, State::Failed) {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref()
            && let Some(len) = self.scan(data)
        {
            let limit = self.limit;
            return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                "the request message is {len} bytes; the limit is {limit} bytes"
            )))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Failed) || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt as _, StreamBody};

    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
        bytes.extend(std::iter::repeat_n(7, len));
        bytes
    }

    async fn run(chunks: Vec<Vec<u8>>, limit: usize) -> Result<usize, Status> {
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, Status>(Frame::data(Bytes::from(c))));
        let body = StreamBody::new(futures::stream::iter(frames));
        let collected = MessageLimit::new(body, limit).collect().await?;
        Ok(collected.to_bytes().len())
    }

    #[tokio::test]
    async fn messages_within_the_limit_pass_whole_even_split_anywhere() {
        let mut stream = message(10);
        stream.extend(message(0));
        stream.extend(message(100));
        let total = stream.len();
        // Every split point, including inside a header.
        for at in 0..=stream.len() {
            let chunks = vec![stream[..at].to_vec(), stream[at..].to_vec()];
            assert_eq!(run(chunks, 100).await.unwrap(), total);
        }
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_resource_exhausted_before_its_body() {
        let mut stream = message(10);
        stream.extend(message(101));
        // The header of the big message arrives alone, split over two chunks; nothing of its
        // body has been sent when the error comes.
        let chunks = vec![stream[..17].to_vec(), stream[17..20].to_vec()];
        let status = run(chunks, 100).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("101 bytes"), "{status:?}");
    }
}
