use super::*;
use std::collections::VecDeque;

/// Replies from a script and records what it was sent.
struct Scripted {
    replies: VecDeque<Result<Vec<u8>, CardError>>,
    sent: Vec<Vec<u8>>,
}

impl Scripted {
    fn new(replies: &[&[u8]]) -> Self {
        Scripted {
            replies: replies.iter().map(|r| Ok(r.to_vec())).collect(),
            sent: Vec::new(),
        }
    }
}

impl Transport for Scripted {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        self.sent.push(apdu.to_vec());
        self.replies
            .pop_front()
            .unwrap_or(Err(CardError::Link("script exhausted".into())))
    }
}

#[test]
fn encodes_the_four_cases_short() {
    let c1 = Command::new(0x00, 0x20, 0x00, 0x88);
    assert_eq!(
        &c1.encode(LengthForm::Short).unwrap()[..],
        &[0, 0x20, 0, 0x88]
    );
    let c2 = Command::new(0x00, 0xB0, 0x01, 0x02).with_le(256);
    assert_eq!(
        &c2.encode(LengthForm::Short).unwrap()[..],
        &[0, 0xB0, 1, 2, 0]
    );
    let c3 = Command::new(0x00, 0xA4, 0x02, 0x0C).with_data(&[0x00, 0x16]);
    assert_eq!(
        &c3.encode(LengthForm::Short).unwrap()[..],
        &[0, 0xA4, 2, 0x0C, 2, 0, 0x16]
    );
    let c4 = Command::new(0x00, 0xA4, 0x04, 0x00)
        .with_data(&[0xE8, 0x28, 0xBD, 0x08, 0x0F])
        .with_le(256);
    assert_eq!(
        &c4.encode(LengthForm::Short).unwrap()[..],
        &[0, 0xA4, 4, 0, 5, 0xE8, 0x28, 0xBD, 0x08, 0x0F, 0]
    );
}

#[test]
fn encodes_extended() {
    let c2 = Command::new(0x00, 0xB0, 0x00, 0x00).with_le(65_536);
    assert_eq!(
        &c2.encode(LengthForm::Extended).unwrap()[..],
        &[0, 0xB0, 0, 0, 0, 0, 0]
    );
    let c4 = Command::new(0x00, 0x2A, 0x9E, 0x9A)
        .with_data(&[0xAB; 256])
        .with_le(65_536);
    let raw = c4.encode(LengthForm::Extended).unwrap();
    assert_eq!(&raw[..7], &[0, 0x2A, 0x9E, 0x9A, 0x00, 0x01, 0x00]);
    assert_eq!(raw.len(), 7 + 256 + 2);
    assert_eq!(&raw[263..], &[0, 0]);
    let c3 = Command::new(0x00, 0xD6, 0x00, 0x00).with_data(&[1; 300]);
    let raw = c3.encode(LengthForm::Extended).unwrap();
    assert_eq!(&raw[4..7], &[0x00, 0x01, 0x2C]);
    assert_eq!(raw.len(), 307);
}

#[test]
fn refuses_what_cannot_be_encoded() {
    let long = Command::new(0, 0xD6, 0, 0).with_data(&[0; 256]);
    assert!(long.encode(LengthForm::Short).is_err());
    let le0 = Command::new(0, 0xB0, 0, 0).with_le(0);
    assert!(le0.encode(LengthForm::Short).is_err());
    let le_big = Command::new(0, 0xB0, 0, 0).with_le(257);
    assert!(le_big.encode(LengthForm::Short).is_err());
    assert!(le_big.encode(LengthForm::Extended).is_ok());
    let too_big = Command::new(0, 0xD6, 0, 0).with_data(&vec![0; 65_536]);
    assert!(too_big.encode(LengthForm::Extended).is_err());
}

#[test]
fn status_words_round_trip() {
    for sw in [
        0x9000, 0x63C0, 0x63C5, 0x63CF, 0x6983, 0x6982, 0x6985, 0x6A82, 0x6A86, 0x6700, 0x6D00,
        0x6E00, 0x6282, 0x6B00,
    ] {
        assert_eq!(StatusWord::from_u16(sw).to_u16(), sw);
    }
    assert_eq!(
        StatusWord::from_u16(0x63C3),
        StatusWord::WrongPin { tries_left: 3 }
    );
    assert_eq!(StatusWord::from_u16(0x6300), StatusWord::Other(0x6300));
    assert_eq!(StatusWord::Ok.to_string(), "9000 (ok)");
}

#[test]
fn truncated_responses_are_errors() {
    assert!(matches!(
        Response::parse(vec![]),
        Err(CardError::Malformed(_))
    ));
    assert!(matches!(
        Response::parse(vec![0x90]),
        Err(CardError::Malformed(_))
    ));
    let r = Response::parse(vec![1, 2, 0x90, 0x00]).unwrap();
    assert_eq!((r.data, r.sw), (vec![1, 2], 0x9000));
    let mut ch = Channel::new(Scripted::new(&[&[0x90]]));
    let cmd = Command::new(0, 0xB0, 0, 0).with_le(16);
    assert!(matches!(ch.transmit(&cmd), Err(CardError::Malformed(_))));
}

#[test]
fn more_data_than_asked_is_refused() {
    let mut ch = Channel::new(Scripted::new(&[&[1, 2, 3, 0x90, 0x00]]));
    let cmd = Command::new(0, 0xB0, 0, 0).with_le(2);
    assert!(matches!(ch.transmit(&cmd), Err(CardError::Malformed(_))));
    // Data in the answer to a command that asked for none.
    let mut ch = Channel::new(Scripted::new(&[&[1, 0x90, 0x00]]));
    let cmd = Command::new(0, 0xA4, 2, 0x0C).with_data(&[0, 0x16]);
    assert!(matches!(ch.transmit(&cmd), Err(CardError::Malformed(_))));
}

#[test]
fn get_response_collects_the_rest() {
    let mut ch = Channel::new(Scripted::new(&[
        &[0x61, 0x03],
        &[1, 2, 3, 0x61, 0x02],
        &[4, 5, 0x90, 0x00],
    ]));
    let cmd = Command::new(0, 0xCA, 0, 0).with_le(256);
    let resp = ch.transmit(&cmd).unwrap();
    assert_eq!((resp.data, resp.sw), (vec![1, 2, 3, 4, 5], 0x9000));
    let sent = &ch.transport_mut().sent;
    assert_eq!(sent[1], vec![0x00, 0xC0, 0x00, 0x00, 0x03]);
    assert_eq!(sent[2], vec![0x00, 0xC0, 0x00, 0x00, 0x02]);
}

#[test]
fn get_response_is_bounded() {
    // A card that answers 61xx forever.
    let endless: Vec<&[u8]> = vec![&[0x61, 0x00]; MAX_GET_RESPONSE + 10];
    let mut ch = Channel::new(Scripted::new(&endless));
    let cmd = Command::new(0, 0xCA, 0, 0).with_le(256);
    assert!(matches!(ch.transmit(&cmd), Err(CardError::Malformed(_))));
    assert!(ch.transport_mut().sent.len() <= MAX_GET_RESPONSE + 1);
    // A card that announces bytes and sends too many in GET RESPONSE.
    let mut ch = Channel::new(Scripted::new(&[&[0x61, 0x01], &[1, 2, 0x90, 0x00]]));
    assert!(matches!(ch.transmit(&cmd), Err(CardError::Malformed(_))));
}

#[test]
fn wrong_le_is_resent_once() {
    let mut ch = Channel::new(Scripted::new(&[&[0x6C, 0x04], &[9, 8, 7, 6, 0x90, 0x00]]));
    let cmd = Command::new(0, 0xB0, 0, 0x10).with_le(256);
    let resp = ch.transmit(&cmd).unwrap();
    assert_eq!(resp.data, vec![9, 8, 7, 6]);
    assert_eq!(ch.transport_mut().sent[1], vec![0, 0xB0, 0, 0x10, 0x04]);
    // 6C00 means 256.
    let mut ch = Channel::new(Scripted::new(&[&[0x6C, 0x00], &[0x90, 0x00]]));
    ch.transmit(&cmd).unwrap();
    assert_eq!(ch.transport_mut().sent[1], vec![0, 0xB0, 0, 0x10, 0x00]);
    // A second 6Cxx is handed back, not chased.
    let mut ch = Channel::new(Scripted::new(&[&[0x6C, 0x04], &[0x6C, 0x02]]));
    let resp = ch.transmit(&cmd).unwrap();
    assert_eq!(resp.sw, 0x6C02);
    assert_eq!(ch.transport_mut().sent.len(), 2);
}

#[test]
fn wrong_le_then_get_response() {
    let mut ch = Channel::new(Scripted::new(&[
        &[0x6C, 0x02],
        &[1, 0x61, 0x01],
        &[2, 0x90, 0x00],
    ]));
    let cmd = Command::new(0, 0xB0, 0, 0).with_le(10);
    assert_eq!(ch.transmit(&cmd).unwrap().data, vec![1, 2]);
}

#[test]
fn long_data_goes_extended_when_allowed() {
    let mut ch = Channel::new(Scripted::new(&[&[0xAA; 256]
        .iter()
        .copied()
        .chain([0x90, 0])
        .collect::<Vec<_>>()]));
    let cmd = Command::new(0x00, 0x2A, 0x9E, 0x9A)
        .with_data(&[0x01; 256])
        .with_le(65_536);
    let resp = ch.transmit(&cmd).unwrap();
    assert_eq!(resp.data.len(), 256);
    let sent = &ch.transport_mut().sent;
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0][4..7], &[0x00, 0x01, 0x00]);
}

#[test]
fn chaining_on_short_only_channels() {
    let mut ch = Channel::short_only(Scripted::new(&[
        &[0x90, 0x00],
        &[0x61, 0x00],
        &[0x55; 256]
            .iter()
            .copied()
            .chain([0x90, 0])
            .collect::<Vec<_>>(),
    ]));
    let data: Vec<u8> = (0..=255u8).collect();
    let cmd = Command::new(0x00, 0x2A, 0x9E, 0x9A)
        .with_data(&data)
        .with_le(65_536);
    let resp = ch.transmit(&cmd).unwrap();
    assert_eq!(resp.data.len(), 256);
    let sent = &ch.transport_mut().sent;
    assert_eq!(sent[0][0], 0x10);
    assert_eq!(sent[0][4], 255);
    assert_eq!(&sent[0][5..], &data[..255]);
    assert_eq!(sent[0].len(), 5 + 255, "no Le on a chained piece");
    assert_eq!(sent[1], vec![0x00, 0x2A, 0x9E, 0x9A, 0x01, 0xFF, 0x00]);
    assert_eq!(sent[2], vec![0x00, 0xC0, 0x00, 0x00, 0x00]);
}

#[test]
fn chaining_stops_at_a_refused_piece() {
    let mut ch = Channel::short_only(Scripted::new(&[&[0x68, 0x84]]));
    let cmd = Command::new(0x00, 0x2A, 0x9E, 0x9A).with_data(&[0; 600]);
    let resp = ch.transmit(&cmd).unwrap();
    assert_eq!(resp.sw, 0x6884);
    assert_eq!(ch.transport_mut().sent.len(), 1);
    // Data in an intermediate answer is malformed.
    let mut ch = Channel::short_only(Scripted::new(&[&[1, 0x90, 0x00]]));
    assert!(matches!(ch.transmit(&cmd), Err(CardError::Malformed(_))));
}

#[test]
fn transport_errors_pass_through() {
    let mut t = Scripted::new(&[]);
    t.replies.push_back(Err(CardError::Removed));
    let mut ch = Channel::new(t);
    let cmd = Command::new(0, 0xB0, 0, 0).with_le(1);
    assert!(matches!(ch.transmit(&cmd), Err(CardError::Removed)));
}

#[test]
fn debug_never_shows_data() {
    let pin = Command::new(0, 0x20, 0, 0x88).with_data(b"1234");
    let shown = format!("{pin:?}");
    assert!(!shown.contains("1234") && !shown.contains("49, 50"));
}
