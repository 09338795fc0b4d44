//! memcached protocol rules shared by every front end. The wire parsers arrive with the server.

pub mod exptime;
