//! `ha-fetchers mcp`'s transport: stdin and stdout with every line checked
//! before rmcp sees it. rmcp drops a line it cannot read without a word (a
//! 100 MB line left the client waiting for ever); here a line past the limit
//! or one that is not a JSON-RPC message is answered with a JSON-RPC error,
//! and only good lines reach rmcp. rmcp's answers and those errors reach
//! stdout as whole lines, never interleaved.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::wire;

/// Bytes buffered in each pipe between these tasks and rmcp.
const PIPE_BYTES: usize = 64 * 1024;

/// The pair rmcp serves on, fed from `input` and writing to `output`: lines
/// of at most `max_line` bytes pass, the rest are answered here.
pub fn guarded<R, W>(input: R, output: W, max_line: usize) -> (impl AsyncRead, impl AsyncWrite)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (to_rmcp, rmcp_in) = tokio::io::duplex(PIPE_BYTES);
    let (rmcp_out, from_rmcp) = tokio::io::duplex(PIPE_BYTES);
    let (errors_tx, errors_rx) = mpsc::channel::<Vec<u8>>(16);
    tokio::spawn(read(input, to_rmcp, errors_tx, max_line));
    tokio::spawn(write(from_rmcp, errors_rx, output));
    (rmcp_in, rmcp_out)
}

/// Reads `input` line by line: good lines go to rmcp, bad ones get an error.
async fn read<R: AsyncRead + Unpin>(
    input: R,
    mut to_rmcp: tokio::io::DuplexStream,
    errors: mpsc::Sender<Vec<u8>>,
    max_line: usize,
) {
    let mut input = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        let (n, whole) = match read_line(&mut input, &mut line, max_line).await {
            Ok(r) => r,
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) && whole {
            continue;
        }
        let answer = if !whole {
            Some(wire::error(
                wire::INVALID_REQUEST,
                &format!("Invalid Request: the line is over {max_line} bytes (MAX_BODY_BYTES)"),
                serde_json::Value::Null,
            ))
        } else {
            match serde_json::from_slice::<serde_json::Value>(text) {
                Err(e) => Some(wire::error(
                    wire::PARSE_ERROR,
                    &format!("Parse error: {e}"),
                    serde_json::Value::Null,
                )),
                Ok(v) if !wire::one_message(&v) => {
                    let id = v.get("id").cloned().unwrap_or_default();
                    Some(wire::error(
                        wire::INVALID_REQUEST,
                        wire::NOT_ONE_MESSAGE,
                        id,
                    ))
                }
                Ok(_) => None,
            }
        };
        match answer {
            Some(e) => {
                let mut out = e.to_string().into_bytes();
                out.push(b'\n');
                if errors.send(out).await.is_err() {
                    break;
                }
            }
            None => {
                if to_rmcp.write_all(text).await.is_err() || to_rmcp.write_all(b"\n").await.is_err()
                {
                    break;
                }
            }
        }
    }
    let _ = to_rmcp.shutdown().await;
}

/// One line into `line`, keeping at most `max` bytes of it and skipping the
/// rest: the byte count read and whether the line was whole.
async fn read_line<R: AsyncRead + Unpin>(
    input: &mut BufReader<R>,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<(usize, bool)> {
    let mut total = 0;
    loop {
        let buf = input.fill_buf().await?;
        if buf.is_empty() {
            return Ok((total, total <= max));
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let n = chunk.len();
        if total + n <= max + 2 {
            line.extend_from_slice(chunk);
        }
        total += n;
        input.consume(n);
        if done {
            return Ok((total, total <= max + 2));
        }
    }
}

/// Copies rmcp's lines and the errors to `output`, a whole line at a time.
async fn write<W: AsyncWrite + Unpin>(
    from_rmcp: tokio::io::DuplexStream,
    mut errors: mpsc::Receiver<Vec<u8>>,
    mut output: W,
) {
    let mut rmcp = BufReader::new(from_rmcp);
    let mut line = Vec::new();
    let mut rmcp_open = true;
    loop {
        let next = tokio::select! {
            r = rmcp.read_until(b'\n', &mut line), if rmcp_open => match r {
                Ok(0) | Err(_) => { rmcp_open = false; continue; }
                Ok(_) => std::mem::take(&mut line),
            },
            e = errors.recv() => match e {
                Some(e) => e,
                None if rmcp_open => continue,
                None => break,
            },
            else => break,
        };
        if output.write_all(&next).await.is_err() || output.flush().await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A line past the limit and one that is not JSON get errors; the good
    /// line after them reaches rmcp's side whole.
    #[tokio::test]
    async fn bad_lines_are_answered_and_good_ones_pass() {
        let good = r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#;
        let input = format!("{}\n{{not json\n{{\"id\":3}}\n\n{good}\n", "x".repeat(5000));
        let (mut out_r, out_w) = tokio::io::duplex(1 << 16);
        let (mut rmcp_in, rmcp_out) =
            guarded(std::io::Cursor::new(input.into_bytes()), out_w, 1024);
        let mut passed = String::new();
        rmcp_in.read_to_string(&mut passed).await.unwrap();
        assert_eq!(passed, format!("{good}\n"));
        drop(rmcp_out);
        let mut out = String::new();
        out_r.read_to_string(&mut out).await.unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[0]["error"]["code"], wire::INVALID_REQUEST);
        assert!(lines[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("over 1024 bytes"));
        assert_eq!(lines[1]["error"]["code"], wire::PARSE_ERROR);
        assert_eq!(lines[2]["error"]["code"], wire::INVALID_REQUEST);
        assert_eq!(lines[2]["id"], 3);
    }
}
