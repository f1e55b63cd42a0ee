//! SASL failure conditions (RFC 6120 §6.5), with their wire names.

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslFailure {
    #[error("aborted")]
    Aborted,
    #[error("account disabled")]
    AccountDisabled,
    #[error("credentials expired")]
    CredentialsExpired,
    #[error("encryption required")]
    EncryptionRequired,
    #[error("incorrect encoding")]
    IncorrectEncoding,
    #[error("invalid authorization identity")]
    InvalidAuthzid,
    #[error("invalid mechanism")]
    InvalidMechanism,
    #[error("malformed request")]
    MalformedRequest,
    #[error("mechanism too weak")]
    MechanismTooWeak,
    #[error("not authorized")]
    NotAuthorized,
    #[error("temporary authentication failure")]
    TemporaryAuthFailure,
}

impl SaslFailure {
    /// The element name inside `<failure/>`.
    pub fn condition(&self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account-disabled",
            SaslFailure::CredentialsExpired => "credentials-expired",
            SaslFailure::EncryptionRequired => "encryption-required",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::MechanismTooWeak => "mechanism-too-weak",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }

    /// For metric labels (underscores).
    pub fn label(&self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account_disabled",
            SaslFailure::CredentialsExpired => "credentials_expired",
            SaslFailure::EncryptionRequired => "encryption_required",
            SaslFailure::IncorrectEncoding => "incorrect_encoding",
            SaslFailure::InvalidAuthzid => "invalid_authzid",
            SaslFailure::InvalidMechanism => "invalid_mechanism",
            SaslFailure::MalformedRequest => "malformed_request",
            SaslFailure::MechanismTooWeak => "mechanism_too_weak",
            SaslFailure::NotAuthorized => "not_authorized",
            SaslFailure::TemporaryAuthFailure => "temporary_auth_failure",
        }
    }
}
