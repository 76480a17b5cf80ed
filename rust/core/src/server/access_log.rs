//! One access-log line per request, as text or JSON, on stdout.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::codec::json_write;
use crate::config::AccessLog;

/// What an access-log line says about one request.
#[derive(Debug, Clone, Copy)]
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub model: &'a str,
    pub protocol: &'a str,
    pub status: u16,
    /// When the request arrived: the latency is read only when a line is written.
    pub started: Instant,
}

impl AccessLine<'_> {
    pub fn write(&self, format: AccessLog) {
        let render = match format {
            AccessLog::Off => return,
            AccessLog::Text => Self::text,
            AccessLog::Json => Self::json,
        };
        let line = render(self, self.started.elapsed());
        let mut out = std::io::stdout().lock();
        // A closed stdout must not fail requests.
        let _ = out.write_all(&line);
    }

    fn text(&self, latency: Duration) -> Vec<u8> {
        format!(
            "{} {} {} model={} protocol={} status={} latency_ms={:.3}\n",
            self.request_id,
            self.method,
            self.path,
            self.model,
            self.protocol,
            self.status,
            latency_ms(latency)
        )
        .into_bytes()
    }

    fn json(&self, latency: Duration) -> Vec<u8> {
        let mut out = Vec::with_capacity(192);
        let fields = [
            ("request_id", self.request_id),
            ("method", self.method),
            ("path", self.path),
            ("model", self.model),
            ("protocol", self.protocol),
        ];
        out.push(b'{');
        for (index, (key, value)) in fields.into_iter().enumerate() {
            json_write::key(&mut out, key, index == 0);
            json_write::string(&mut out, value);
        }
        out.extend_from_slice(
            format!(
                ",\"status\":{},\"latency_ms\":{:.3}}}\n",
                self.status,
                latency_ms(latency)
            )
            .as_bytes(),
        );
        out
    }
}

fn latency_ms(latency: Duration) -> f64 {
    latency.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> AccessLine<'static> {
        AccessLine {
            request_id: "r1",
            method: "POST",
            path: "/v2/models/m/infer",
            model: "m\"x",
            protocol: "v2",
            status: 200,
            started: Instant::now(),
        }
    }

    const LATENCY: Duration = Duration::from_micros(1500);

    #[test]
    fn text_and_json_lines() -> Result<(), serde_json::Error> {
        let text = String::from_utf8_lossy(&line().text(LATENCY)).into_owned();
        assert_eq!(
            text,
            "r1 POST /v2/models/m/infer model=m\"x protocol=v2 status=200 latency_ms=1.500\n"
        );
        let json: serde_json::Value = serde_json::from_slice(&line().json(LATENCY))?;
        assert_eq!(json["model"], "m\"x");
        assert_eq!(json["status"], 200);
        assert_eq!(json["latency_ms"], 1.5);
        Ok(())
    }
}
