//! Text from outside — the gateway's answers, a card's files, a certificate's names — made fit
//! for a terminal: control characters become spaces and the length is bounded.

/// Text from the network, made safe for a terminal: no control characters (no escape
/// sequences), at most `max` characters.
pub fn clean(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}
