//! A terminal's `wg-quick` configuration, and the same as a QR code (PNG) for the mobile
//! WireGuard apps ("Create from QR code").
//!
//! The QR code is drawn here and encoded with the small `png` crate: `qrcode`'s own image
//! rendering needs its `image` feature, which pulls the whole `image` crate (many codecs, a
//! large build) for one grey-scale picture.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use anyhow::{Context, bail};
use qrcode::{Color, EcLevel, QrCode};

use super::keys;

/// Written in place of the private key when it was generated on the terminal (the agent's
/// `enroll`) and the gateway never saw it.
pub const PRIVATE_KEY_PLACEHOLDER: &str = "<terminal private key: generated on the terminal>";

/// The WireGuard keepalive the terminals send, so that NAT mappings stay open and the gateway
/// always knows where to reach them.
pub const PERSISTENT_KEEPALIVE: u16 = 25;

/// What goes into a terminal's `wg-quick` file.
#[derive(Debug, Clone)]
pub struct TerminalTunnel<'a> {
    /// The terminal's private key in base64, or `None` for [`PRIVATE_KEY_PLACEHOLDER`].
    pub private_key: Option<&'a str>,
    /// The terminal's fixed tunnel address (a /32).
    pub address: Ipv4Addr,
    pub gateway_public_key: [u8; 32],
    /// `host:port` the terminal sends its UDP datagrams to.
    pub endpoint: &'a str,
    /// The gateway's tunnel address: the only address routed into the tunnel.
    pub gateway_address: Ipv4Addr,
}

/// Render the `[Interface]` / `[Peer]` file. No `DNS =` line: the terminal keeps its own
/// resolver, and only the gateway's tunnel address goes through the tunnel.
pub fn render(t: &TerminalTunnel<'_>) -> anyhow::Result<String> {
    let endpoint = t.endpoint;
    if endpoint.is_empty()
        || endpoint
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '#')
        || !endpoint.contains(':')
    {
        bail!("endpoint must be host:port, got {endpoint:?}");
    }
    let private_key = match t.private_key {
        Some(k) => {
            keys::decode(k).context("terminal private key")?;
            k.trim()
        }
        None => PRIVATE_KEY_PLACEHOLDER,
    };
    let mut s = String::new();
    let _ = writeln!(s, "[Interface]");
    let _ = writeln!(s, "PrivateKey = {private_key}");
    let _ = writeln!(s, "Address = {}/32", t.address);
    let _ = writeln!(s);
    let _ = writeln!(s, "[Peer]");
    let _ = writeln!(s, "PublicKey = {}", keys::encode(&t.gateway_public_key));
    let _ = writeln!(s, "Endpoint = {endpoint}");
    let _ = writeln!(s, "AllowedIPs = {}/32", t.gateway_address);
    let _ = writeln!(s, "PersistentKeepalive = {PERSISTENT_KEEPALIVE}");
    Ok(s)
}

/// Pixels per QR module.
const MODULE_PX: usize = 6;
/// Light modules around the code, as the QR specification asks.
const QUIET_ZONE: usize = 4;

/// A QR code of `text` as a grey-scale PNG.
pub fn qr_png(text: &str) -> anyhow::Result<Vec<u8>> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .context("text too long for a QR code")?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * MODULE_PX;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
        for y in my * MODULE_PX..(my + 1) * MODULE_PX {
            pixels[y * side + mx * MODULE_PX..y * side + (mx + 1) * MODULE_PX].fill(0);
        }
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&pixels)?;
        writer.finish()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(private_key: Option<&str>) -> TerminalTunnel<'_> {
        TerminalTunnel {
            private_key,
            address: Ipv4Addr::new(10, 77, 0, 12),
            gateway_public_key: [7u8; 32],
            endpoint: "gw.example.jp:51820",
            gateway_address: Ipv4Addr::new(10, 77, 0, 1),
        }
    }

    #[test]
    fn renders_wg_quick_file() {
        let (secret, _) = keys::generate();
        let k = keys::encode_secret(&secret);
        let text = render(&sample(Some(&k))).unwrap();
        assert!(text.contains(&format!("PrivateKey = {}\n", *k)));
        assert!(text.contains("Address = 10.77.0.12/32\n"));
        assert!(text.contains(&format!("PublicKey = {}\n", keys::encode(&[7u8; 32]))));
        assert!(text.contains("Endpoint = gw.example.jp:51820\n"));
        assert!(text.contains("AllowedIPs = 10.77.0.1/32\n"));
        assert!(text.contains("PersistentKeepalive = 25\n"));
        assert!(!text.contains("DNS"));

        let text = render(&sample(None)).unwrap();
        assert!(text.contains(PRIVATE_KEY_PLACEHOLDER));

        let mut bad = sample(None);
        bad.endpoint = "gw:51820\nPostUp = rm -rf /";
        assert!(render(&bad).is_err());
        assert!(render(&sample(Some("nonsense"))).is_err());
    }

    #[test]
    fn qr_code_is_a_png() {
        let text = render(&sample(None)).unwrap();
        let png = qr_png(&text).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!(info.width, info.height);
        assert!(info.width >= 200, "{}", info.width);
        assert!(qr_png(&"x".repeat(5000)).is_err());
    }
}
