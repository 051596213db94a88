//! Job defaults from the operations guide's `MAPPER_*` variables, validated at start-up.

use std::time::Duration;

use crate::retry::RetryConfig;

/// A setting whose value cannot be used; names the variable and what it accepts.
#[derive(Debug, thiserror::Error)]
#[error("invalid {name}={value:?}: expected {expected}")]
pub struct ConfigError {
    /// The variable or flag.
    pub name: String,
    /// The value given.
    pub value: String,
    /// What would be accepted.
    pub expected: &'static str,
}

/// Defaults applied to every job that does not set a field itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDefaults {
    /// `MAPPER_PARALLEL_ENABLED`: whether jobs may be split at all.
    pub parallel: bool,
    /// `MAPPER_MAX_WORKERS`: chunks of one job in flight at once.
    pub max_workers: u32,
    /// `MAPPER_CHUNK_SIZE`: rows per chunk.
    pub chunk_size: u64,
    /// `MAPPER_MIN_ROWS_FOR_PARALLEL`: below this the job runs as one chunk.
    pub min_rows_for_parallel: u64,
    /// `MAPPER_PARALLEL_RETRY_ENABLED`, `MAPPER_PARALLEL_MAX_RETRIES`,
    /// `MAPPER_RETRY_INITIAL_DELAY_MS`, `MAPPER_RETRY_MAX_DELAY_MS`.
    pub retry: RetryConfig,
    /// `MAPPER_ADAPTIVE_CONCURRENCY`: whether chunks in flight adapt to
    /// measured rows/s below `max_workers` (false: always `max_workers`).
    pub adaptive_concurrency: bool,
}

impl Default for JobDefaults {
    fn default() -> Self {
        Self {
            parallel: true,
            max_workers: 4,
            chunk_size: 50_000,
            min_rows_for_parallel: 100_000,
            retry: RetryConfig::default(),
            adaptive_concurrency: true,
        }
    }
}

impl JobDefaults {
    /// Reads the defaults from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the defaults through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut d = Self::default();
        if let Some(v) = lookup("MAPPER_PARALLEL_ENABLED") {
            d.parallel = parse_bool("MAPPER_PARALLEL_ENABLED", &v)?;
        }
        if let Some(v) = lookup("MAPPER_MAX_WORKERS") {
            d.max_workers = parse_positive("MAPPER_MAX_WORKERS", &v)? as u32;
        }
        if let Some(v) = lookup("MAPPER_ADAPTIVE_CONCURRENCY") {
            d.adaptive_concurrency = parse_bool("MAPPER_ADAPTIVE_CONCURRENCY", &v)?;
        }
        if let Some(v) = lookup("MAPPER_CHUNK_SIZE") {
            d.chunk_size = parse_positive("MAPPER_CHUNK_SIZE", &v)?;
        }
        if let Some(v) = lookup("MAPPER_MIN_ROWS_FOR_PARALLEL") {
            d.min_rows_for_parallel = parse_u64("MAPPER_MIN_ROWS_FOR_PARALLEL", &v)?;
        }
        if let Some(v) = lookup("MAPPER_PARALLEL_RETRY_ENABLED") {
            d.retry.enabled = parse_bool("MAPPER_PARALLEL_RETRY_ENABLED", &v)?;
        }
        if let Some(v) = lookup("MAPPER_PARALLEL_MAX_RETRIES") {
            d.retry.max_retries = parse_u64("MAPPER_PARALLEL_MAX_RETRIES", &v)?.min(1000) as u32;
        }
        if let Some(v) = lookup("MAPPER_RETRY_INITIAL_DELAY_MS") {
            d.retry.initial_delay =
                Duration::from_millis(parse_u64("MAPPER_RETRY_INITIAL_DELAY_MS", &v)?);
        }
        if let Some(v) = lookup("MAPPER_RETRY_MAX_DELAY_MS") {
            d.retry.max_delay = Duration::from_millis(parse_u64("MAPPER_RETRY_MAX_DELAY_MS", &v)?);
        }
        if d.retry.max_delay < d.retry.initial_delay {
            return Err(ConfigError {
                name: "MAPPER_RETRY_MAX_DELAY_MS".into(),
                value: d.retry.max_delay.as_millis().to_string(),
                expected: "a value not below MAPPER_RETRY_INITIAL_DELAY_MS",
            });
        }
        Ok(d)
    }
}

/// Parses a boolean the way operators write them (`true/false/1/0/yes/no/on/off`).
pub fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError {
            name: name.into(),
            value: value.into(),
            expected: "true or false",
        }),
    }
}

/// Parses a whole number, allowing `_` and `,` as digit separators.
pub fn parse_u64(name: &str, value: &str) -> Result<u64, ConfigError> {
    let cleaned: String = value
        .trim()
        .chars()
        .filter(|c| *c != '_' && *c != ',')
        .collect();
    cleaned.parse::<u64>().map_err(|_| ConfigError {
        name: name.into(),
        value: value.into(),
        expected: "a whole number",
    })
}

/// Parses a duration: `0`, seconds (`90`), or a number with a unit
/// (`500ms`, `90s`, `30m`, `24h`, `7d`).
pub fn parse_duration(name: &str, value: &str) -> Result<Duration, ConfigError> {
    let bad = || ConfigError {
        name: name.into(),
        value: value.into(),
        expected: "a duration such as 0, 90s, 30m, 24h or 7d",
    };
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

/// Parses a whole number greater than zero.
pub fn parse_positive(name: &str, value: &str) -> Result<u64, ConfigError> {
    match parse_u64(name, value)? {
        0 => Err(ConfigError {
            name: name.into(),
            value: value.into(),
            expected: "a whole number greater than 0",
        }),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<JobDefaults, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        JobDefaults::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_the_guide_variables() {
        let d = load(&[
            ("MAPPER_MAX_WORKERS", "8"),
            ("MAPPER_CHUNK_SIZE", "100000"),
            ("MAPPER_MIN_ROWS_FOR_PARALLEL", "200000"),
            ("MAPPER_PARALLEL_RETRY_ENABLED", "true"),
            ("MAPPER_PARALLEL_MAX_RETRIES", "5"),
        ])
        .unwrap();
        assert_eq!(d.max_workers, 8);
        assert_eq!(d.chunk_size, 100_000);
        assert_eq!(d.retry.max_retries, 5);
        assert_eq!(load(&[]).unwrap().chunk_size, 50_000);
    }

    #[test]
    fn parses_durations() {
        assert_eq!(
            parse_duration("X", "24h").unwrap(),
            Duration::from_secs(86_400)
        );
        assert_eq!(parse_duration("X", "90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("X", "0").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_duration("X", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert!(parse_duration("X", "1 fortnight")
            .unwrap_err()
            .to_string()
            .contains('X'));
    }

    #[test]
    fn rejects_bad_values_naming_the_variable() {
        let e = load(&[("MAPPER_CHUNK_SIZE", "0")]).unwrap_err();
        assert!(e.to_string().contains("MAPPER_CHUNK_SIZE"), "{e}");
        let e = load(&[("MAPPER_PARALLEL_ENABLED", "maybe")]).unwrap_err();
        assert!(e.to_string().contains("MAPPER_PARALLEL_ENABLED"), "{e}");
    }
}
