//! The SASL exchange on the stream (RFC 6120 §6): `<auth/>`, challenges and
//! responses, `<success/>` or `<failure/>`; login throttling (see
//! [`super::throttle`]: the delay is left out of `c2s_auth_seconds`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::negotiate::NS_SASL;
use super::throttle::Scope;
use super::{Connection, Phase};
use crate::errors::{SessionEnd, StreamCondition, StreamError};
use crate::sasl::{self, Mechanism, SaslFailure, ScramCredentials, ScramHash, ScramServer};
use crate::xml::{El, Element, Frame};

/// Failed attempts allowed on one stream before it is closed.
const MAX_FAILURES_PER_STREAM: u32 = 5;

/// Why an attempt failed: the SASL condition, and the account tried (if known).
struct Failed {
    failure: SaslFailure,
    account: Option<String>,
}

impl From<SaslFailure> for Failed {
    fn from(failure: SaslFailure) -> Self {
        Failed {
            failure,
            account: None,
        }
    }
}

impl<T: super::Transport> Connection<T> {
    pub(super) async fn on_auth(&mut self, el: Element) -> Result<(), SessionEnd> {
        self.phase = Phase::Sasl;
        let started = std::time::Instant::now();
        let mechanism = el
            .attr("mechanism")
            .and_then(Mechanism::from_name)
            .filter(|m| self.offered_mechanisms().contains(m));
        // Time held back by the login throttle: not part of the auth's time.
        let mut held = std::time::Duration::ZERO;
        let outcome = match mechanism {
            None => Err(Failed::from(SaslFailure::InvalidMechanism)),
            Some(m) => self.run_mechanism(m, &el, &mut held).await?,
        };
        let started = started + held;
        let host = self.host.clone().unwrap_or_default();
        let (result, reason) = match &outcome {
            Ok(_) => ("success", "none"),
            Err(f) => ("failure", f.failure.label()),
        };
        {
            // Who tried, from where (the log and traces; never a metric label).
            let user = match &outcome {
                Ok((user, _)) => self.account(user),
                Err(f) => f.account.clone().unwrap_or_default(),
            };
            let (peer, id) = (self.peer, self.id);
            let who: [(&'static str, &dyn std::fmt::Display); 3] =
                [("user", &user), ("address", &peer), ("session", &id)];
            self.ctx.instr.emit_meta(
                &crate::events::AUTH,
                &[
                    &host,
                    mechanism.map(|m| m.label()).unwrap_or("unknown"),
                    result,
                    reason,
                ],
                &[("count", 1.0), ("seconds", started.elapsed().as_secs_f64())],
                &osprey_instrument::Meta::new(&who),
            );
        }
        match outcome {
            Ok((user, additional)) => {
                let mut success = El::new("success").xmlns(NS_SASL);
                if let Some(data) = additional {
                    success = success.text(&B64.encode(data));
                }
                self.ctx
                    .throttle
                    .succeeded(self.peer.ip(), &self.account(&user));
                self.sasl_guesses.clear();
                tracing::debug!(user = %user, peer = %self.peer, "authenticated");
                self.user = Some(user);
                self.step(
                    "c2s.sasl",
                    format!(
                        "mechanism={} outcome=success{}",
                        mechanism.map(|m| m.name()).unwrap_or(""),
                        held_note(held)
                    ),
                    started,
                );
                self.send(&success.to_string()).await?;
                // Raise the stanza limit and drop anything sent before <success/>.
                self.t
                    .set_max_element_bytes(self.lst.config.max_stanza_size);
                self.restart();
                Ok(())
            }
            Err(failed) => {
                self.step(
                    "c2s.sasl",
                    format!(
                        "mechanism={} outcome=failure reason={}{}",
                        mechanism.map(|m| m.name()).unwrap_or(""),
                        failed.failure.condition(),
                        held_note(held)
                    ),
                    started,
                );
                if let (SaslFailure::NotAuthorized, Some(account), Some(m)) =
                    (&failed.failure, failed.account.as_deref(), mechanism)
                {
                    // Falling back to the next mechanism with the same
                    // password is not another guess.
                    if self.sasl_guesses.is_new_guess(account, m) {
                        self.ctx.throttle.failed(self.peer.ip(), account);
                    }
                }
                self.sasl_failures += 1;
                self.phase = Phase::Features;
                let failure = El::new("failure")
                    .xmlns(NS_SASL)
                    .child(El::new(failed.failure.condition()));
                self.send(&failure.to_string()).await?;
                if self.sasl_failures >= MAX_FAILURES_PER_STREAM {
                    self.ctx.instr.limit("auth_attempts");
                    return Err(StreamError::with_text(
                        StreamCondition::PolicyViolation,
                        "too many failed authentication attempts",
                    )
                    .into());
                }
                Ok(())
            }
        }
    }

    /// Returns the authenticated localpart and the `<success/>` data; adds
    /// the throttle's delay, if any, to `held`.
    async fn run_mechanism(
        &mut self,
        mechanism: Mechanism,
        auth: &Element,
        held: &mut std::time::Duration,
    ) -> Result<Result<(String, Option<Vec<u8>>), Failed>, SessionEnd> {
        let first = match decode(auth.node().text()) {
            Err(f) => return Ok(Err(f.into())),
            Ok(Some(data)) => data,
            // No initial response: ask for it with an empty challenge.
            Ok(None) => match self.challenge(&[]).await? {
                Ok(data) => data,
                Err(f) => return Ok(Err(f.into())),
            },
        };
        Ok(match mechanism {
            Mechanism::Plain => self.plain(&first, held).await,
            Mechanism::ScramSha1 => self.scram(ScramHash::Sha1, &first, held).await?,
            Mechanism::ScramSha256 => self.scram(ScramHash::Sha256, &first, held).await?,
        })
    }

    async fn plain(
        &mut self,
        data: &[u8],
        held: &mut std::time::Duration,
    ) -> Result<(String, Option<Vec<u8>>), Failed> {
        let req = sasl::parse_plain(data)?;
        let user = normalise_user(&req.authcid)?;
        self.check_authzid(&user, req.authzid.as_deref())?;
        let account = self.account(&user);
        *held += self.throttle_wait(&account).await;
        let fail = || Failed {
            failure: SaslFailure::NotAuthorized,
            account: Some(account.clone()),
        };
        // An unknown user is checked against fake keys, with the same work
        // as a wrong password, so the time taken does not tell them apart.
        let stored = self.credentials(&user, ScramHash::Sha256).await?;
        if sasl::verify_plain(
            stored.as_ref(),
            &user,
            &req.password,
            &self.ctx.secret,
            self.ctx.config.auth.scram_iterations,
        ) {
            Ok((user, None))
        } else {
            Err(fail())
        }
    }

    async fn scram(
        &mut self,
        hash: ScramHash,
        data: &[u8],
        held: &mut std::time::Duration,
    ) -> Result<Result<(String, Option<Vec<u8>>), Failed>, SessionEnd> {
        let first = match sasl::parse_client_first(data) {
            Ok(f) => f,
            Err(f) => return Ok(Err(f.into())),
        };
        let user = match normalise_user(&first.username) {
            Ok(u) => u,
            Err(f) => return Ok(Err(f)),
        };
        if let Err(f) = self.check_authzid(&user, first.authzid.as_deref()) {
            return Ok(Err(f));
        }
        let account = self.account(&user);
        *held += self.throttle_wait(&account).await;
        // An unknown user runs the same exchange on fake keys, so the answer
        // does not tell whether the account exists.
        let creds = match self.credentials(&user, hash).await {
            Ok(Some(c)) => c,
            Ok(None) => sasl::fake_credentials(
                hash,
                &user,
                &self.ctx.secret,
                self.ctx.config.auth.scram_iterations,
            ),
            Err(f) => return Ok(Err(f)),
        };
        let (server, server_first) = ScramServer::new(first, creds);
        let client_final = match self.challenge(&server_first).await? {
            Ok(d) => d,
            Err(f) => return Ok(Err(f.into())),
        };
        Ok(match server.finish(&client_final) {
            Ok(server_final) => Ok((user, Some(server_final))),
            Err(failure) => Err(Failed {
                failure,
                account: Some(account),
            }),
        })
    }

    /// Sends a challenge and waits for the client's response.
    async fn challenge(&mut self, data: &[u8]) -> Result<Result<Vec<u8>, SaslFailure>, SessionEnd> {
        let mut challenge = El::new("challenge").xmlns(NS_SASL);
        if !data.is_empty() {
            challenge = challenge.text(&B64.encode(data));
        }
        self.send(&challenge.to_string()).await?;
        match self.next_frame().await? {
            Frame::Element(el) if el.ns() == Some(NS_SASL) && el.name() == "response" => {
                Ok(decode(el.node().text()).map(Option::unwrap_or_default))
            }
            Frame::Element(el) if el.ns() == Some(NS_SASL) && el.name() == "abort" => {
                Ok(Err(SaslFailure::Aborted))
            }
            Frame::StreamClose => Err(SessionEnd::PeerClosed),
            _ => Err(StreamError::with_text(
                StreamCondition::NotAuthorized,
                "expected a SASL response",
            )
            .into()),
        }
    }

    /// Holds the attempt if its address or its account is throttled;
    /// returns the time held.
    async fn throttle_wait(&self, account: &str) -> std::time::Duration {
        let Some(v) = self.ctx.throttle.check(self.peer.ip(), account) else {
            return std::time::Duration::ZERO;
        };
        let ip = self.peer.ip().to_string();
        let key = match v.scope {
            Scope::Address => ip.as_str(),
            Scope::Account => account,
        };
        tracing::info!(
            peer = %self.peer,
            scope = v.scope.label(),
            key,
            delay_ms = v.delay.as_millis() as u64,
            "login throttled ({} {key})",
            v.scope.label()
        );
        self.ctx.instr.emit(
            &crate::events::LOGIN_THROTTLED,
            &[v.scope.label()],
            &[("count", 1.0), ("seconds", v.delay.as_secs_f64())],
        );
        self.ctx.instr.limit("auth_attempts");
        let slept = std::time::Instant::now();
        tokio::time::sleep(v.delay).await;
        slept.elapsed()
    }

    fn account(&self, user: &str) -> String {
        format!("{}@{}", user, self.host.as_deref().unwrap_or(""))
    }

    /// An authorization identity, if given, must be the account itself.
    fn check_authzid(&self, user: &str, authzid: Option<&str>) -> Result<(), Failed> {
        match authzid {
            None => Ok(()),
            Some(a) if crate::jid::Jid::parse(a).is_ok_and(|j| j.bare() == self.account(user)) => {
                Ok(())
            }
            Some(_) => Err(SaslFailure::InvalidAuthzid.into()),
        }
    }

    async fn credentials(
        &self,
        user: &str,
        hash: ScramHash,
    ) -> Result<Option<ScramCredentials>, Failed> {
        let host = self.host.as_deref().unwrap_or("");
        // In the login's scope: `--task storage` traces see the lookup.
        let scope = crate::live::login_scope(&self.ctx.live, &self.account(user), self.id);
        let lookup = self.ctx.storage.get_credentials(host, user);
        let stored = crate::live::scoped(scope, lookup).await.map_err(|e| {
            tracing::warn!(error = %e, "credentials lookup failed");
            Failed::from(SaslFailure::TemporaryAuthFailure)
        })?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let encoded = match hash {
            ScramHash::Sha1 => stored.scram_sha1,
            ScramHash::Sha256 => stored.scram_sha256,
        };
        ScramCredentials::decode(hash, &encoded)
            .map(Some)
            .map_err(|_| {
                tracing::warn!(user, "stored SCRAM data is unreadable");
                Failed::from(SaslFailure::TemporaryAuthFailure)
            })
    }
}

/// The trace step's note of a throttling delay (left out of its time).
fn held_note(held: std::time::Duration) -> String {
    if held.is_zero() {
        String::new()
    } else {
        format!(" throttled_ms={}", held.as_millis())
    }
}

/// `<auth/>`/`<response/>` text: absent = no data, `=` = empty data.
fn decode(text: Option<&str>) -> Result<Option<Vec<u8>>, SaslFailure> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some("=") => Ok(Some(Vec::new())),
        Some(t) => B64
            .decode(t)
            .map(Some)
            .map_err(|_| SaslFailure::IncorrectEncoding),
    }
}

fn normalise_user(name: &str) -> Result<String, Failed> {
    crate::jid::normalise_local(name).map_err(|_| Failed::from(SaslFailure::NotAuthorized))
}
