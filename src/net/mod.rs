//! Network reachability: the private-address guard and the upstream dialer.

pub mod dial;
pub mod private;

pub use dial::{find_dial_error, DialError, Dialer};
pub use private::{is_permitted, is_private};
