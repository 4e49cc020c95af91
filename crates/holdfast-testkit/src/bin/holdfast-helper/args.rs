//! Minimal argument handling shared by the helper's subcommands.

use std::time::Duration;

/// Positional arguments and `--flag [value]` options.
#[derive(Debug, Default)]
pub struct Args {
    pub positional: Vec<String>,
    pub flags: Vec<(String, Option<String>)>,
}

impl Args {
    /// Parses `args`; flags listed in `with_value` take the next argument.
    pub fn parse(args: &[String], with_value: &[&str]) -> Args {
        let mut out = Args::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let value = with_value
                    .contains(&name)
                    .then(|| it.next().cloned())
                    .flatten();
                out.flags.push((name.to_owned(), value));
            } else {
                out.positional.push(a.clone());
            }
        }
        out
    }
    /// Whether `--name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| n == name)
    }
    /// The value of `--name VALUE`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
    /// `--name MS` as a duration.
    pub fn millis(&self, name: &str) -> Option<Duration> {
        self.value(name)
            .map(|v| Duration::from_millis(v.parse().expect("milliseconds")))
    }
    /// Positional argument `i`, or exit with a usage error.
    pub fn pos(&self, i: usize, what: &str) -> &str {
        match self.positional.get(i) {
            Some(s) => s,
            None => {
                eprintln!("holdfast-helper: missing {what}");
                std::process::exit(2);
            }
        }
    }
}

/// Blocks until stdin reaches EOF or a line `release` arrives.
pub fn wait_for_release() {
    use std::io::BufRead;
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(l) if l.trim() == "release" => return,
            Ok(_) => continue,
            Err(_) => return,
        }
    }
}

/// Prints a line and flushes stdout at once.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($t)*);
        let _ = out.flush();
    }};
}
