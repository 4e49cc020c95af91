//! One module per subcommand: validated flags in, library calls, exit code
//! out. A new subcommand (`once`, `phase`, `break`, ...) is one more module
//! here plus its `*Args` in `cli.rs` and one arm in `main`.

pub mod docs;
pub mod flock;
pub mod list;
pub mod run;
pub mod status;
