//! PC/SC access for HPKI and patient cards. This stage holds reader discovery only; the APDU
//! layer, the card profiles, the terminal agent and the virtual card come with sign-in.

pub mod readers;
