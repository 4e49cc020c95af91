//! One module per subcommand: flags in, library calls, exit code out.

pub mod run;
pub mod status;
