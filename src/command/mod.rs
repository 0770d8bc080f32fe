//! The one-shot commands, once the command line is parsed: `check` and
//! `token`. (`run`, `issuer` and `quickstart` are in `lifecycle`.)

mod check;
mod token;

pub use check::check;
pub use token::print_token;
