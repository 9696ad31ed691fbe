use crate::Error;

/// PEM-encode one DER object with the given tag (`CERTIFICATE`, `X509 CRL`, ...).
pub fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// PEM-encode several DER objects with the same tag, concatenated.
pub fn pem_encode_many<'a>(tag: &str, ders: impl IntoIterator<Item = &'a [u8]>) -> String {
    ders.into_iter().map(|d| pem_encode(tag, d)).collect()
}

/// Read certificates from PEM (any number of `CERTIFICATE` blocks, other
/// blocks ignored) or from a single DER certificate.
pub fn certs_from_pem_or_der(input: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    if looks_like_pem(input) {
        let blocks = pem::parse_many(input).map_err(|e| Error::parse("PEM", e))?;
        let certs: Vec<Vec<u8>> = blocks
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| p.into_contents())
            .collect();
        if certs.is_empty() {
            return Err(Error::parse("certificate", "no CERTIFICATE block in PEM"));
        }
        Ok(certs)
    } else {
        x509_parser::parse_x509_certificate(input).map_err(|e| Error::parse("certificate", e))?;
        Ok(vec![input.to_vec()])
    }
}

pub(crate) fn looks_like_pem(input: &[u8]) -> bool {
    let trimmed = input
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| &input[i..])
        .unwrap_or(&[]);
    trimmed.starts_with(b"-----BEGIN ")
}
