//! Network reachability: the private-address guard, the upstream dialer, and the
//! strict parser for the `host[:port]` a peer names.

pub mod authority;
pub mod dial;
pub mod private;

pub use authority::{Authority, AuthorityError, PortRule};
pub use dial::{find_dial_error, DialError, Dialer};
pub use private::{is_permitted, is_private};
