//! One access-log line per request, as text or JSON, on stdout.

use std::io::Write;
use std::time::Duration;

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
    pub latency: Duration,
}

impl AccessLine<'_> {
    pub fn write(&self, format: AccessLog) {
        let line = match format {
            AccessLog::Off => return,
            AccessLog::Text => self.text(),
            AccessLog::Json => self.json(),
        };
        let mut out = std::io::stdout().lock();
        // A closed stdout must not fail requests.
        let _ = out.write_all(&line);
    }

    fn latency_ms(&self) -> f64 {
        self.latency.as_secs_f64() * 1000.0
    }

    fn text(&self) -> Vec<u8> {
        format!(
            "{} {} {} model={} protocol={} status={} latency_ms={:.3}\n",
            self.request_id,
            self.method,
            self.path,
            self.model,
            self.protocol,
            self.status,
            self.latency_ms()
        )
        .into_bytes()
    }

    fn json(&self) -> Vec<u8> {
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
                self.latency_ms()
            )
            .as_bytes(),
        );
        out
    }
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
            latency: Duration::from_micros(1500),
        }
    }

    #[test]
    fn text_and_json_lines() -> Result<(), serde_json::Error> {
        let text = String::from_utf8_lossy(&line().text()).into_owned();
        assert_eq!(
            text,
            "r1 POST /v2/models/m/infer model=m\"x protocol=v2 status=200 latency_ms=1.500\n"
        );
        let json: serde_json::Value = serde_json::from_slice(&line().json())?;
        assert_eq!(json["model"], "m\"x");
        assert_eq!(json["status"], 200);
        assert_eq!(json["latency_ms"], 1.5);
        Ok(())
    }
}
