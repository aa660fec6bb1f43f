//! The APDU layer: command encoding, response parsing, status words, and a channel's exchange
//! rules (extended length or chaining, `61xx`, `6Cxx`) against a card that answers anything.
//!
//! Input: `cla ins p1 p2 | flags | le_hi le_lo | data_len_hi data_len_lo | data | script`;
//! flags bit 0: a short-only channel, bit 1: no Le.
//! Invariants: an encoded command reads back as what was encoded; `Response::parse` splits
//! off exactly the last two bytes; status words round-trip; every APDU the channel sends is a
//! well-formed ISO 7816-4 command (short only on a short-only channel); a final answer never
//! carries more than 64 KiB; the exchange ends (the card's script is finite).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_cardreader::apdu::{Channel, Command, LengthForm, Response, StatusWord};
use sekisho_fuzz::{ScriptedCard, command_shape};

fuzz_target!(|input: &[u8]| {
    let [cla, ins, p1, p2, flags, le_hi, le_lo, n_hi, n_lo, rest @ ..] = input else {
        return;
    };
    let n = usize::from(u16::from_be_bytes([*n_hi, *n_lo])).min(rest.len());
    let (data, script) = rest.split_at(n);
    // 0..=65535 and 65536 (le bytes 0000 with bit 2), so both edges are reachable.
    let le = match (flags & 2, u16::from_be_bytes([*le_hi, *le_lo])) {
        (2, _) => None,
        (_, 0) if flags & 4 != 0 => Some(65_536),
        (_, le) => Some(usize::from(le)),
    };
    let mut cmd = Command::new(*cla, *ins, *p1, *p2).with_data(data);
    cmd.le = le;

    for form in [LengthForm::Short, LengthForm::Extended] {
        let Ok(raw) = cmd.encode(form) else {
            continue;
        };
        let shape = command_shape(&raw).expect("an encoded command is a well-formed APDU");
        assert_eq!(raw[..4], [*cla, *ins, *p1, *p2]);
        assert_eq!(shape.data, data);
        assert_eq!(shape.le, le);
        if raw.len() > 4 {
            assert_eq!(shape.extended, form == LengthForm::Extended);
        }
    }

    // The script's first bytes, read as one raw response.
    if let Ok(resp) = Response::parse(script.to_vec()) {
        assert_eq!(resp.data, script[..script.len() - 2]);
        assert_eq!(resp.sw.to_be_bytes(), script[script.len() - 2..]);
        assert_eq!(StatusWord::from_u16(resp.sw).to_u16(), resp.sw);
        assert_eq!(resp.is_ok(), resp.status() == StatusWord::Ok);
    } else {
        assert!(script.len() < 2);
    }

    let short_only = flags & 1 != 0;
    let card = ScriptedCard::new(script);
    let mut channel = if short_only {
        Channel::short_only(card)
    } else {
        Channel::new(card)
    };
    let result = channel.transmit(&cmd);
    let card = channel.into_transport();
    for (apdu, _) in &card.log {
        let shape = command_shape(apdu).unwrap_or_else(|e| panic!("sent a malformed APDU: {e}"));
        assert!(
            !(short_only && shape.extended),
            "extended APDU on a short-only channel"
        );
        if let Some(le) = shape.le {
            assert!((1..=65_536).contains(&le));
        }
    }
    if let Ok(resp) = result {
        assert!(resp.data.len() <= 65_536, "{} bytes", resp.data.len());
        assert!(!card.log.is_empty());
    }
});
