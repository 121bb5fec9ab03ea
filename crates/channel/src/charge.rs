//! The payee's decision on a `PAYMENT-SIGNATURE`, in the order of `docs/protocol.md` section 2,
//! as a pure function of what the store holds: [`decide`]. The server reads the channel and
//! the header's ticket, decides, writes the outcome with a compare-and-swap and only then
//! serves; nothing here reads a clock, a store or the network.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, Txid};

use crate::auth::PaymentKey;
use crate::credit::{Ledger, NonceKey};
use crate::error::ErrorCode;
use crate::http::{PaymentRequirements, PaymentSignature, Refusal, TICKET_LEN};
use crate::message::WireMessage;
use crate::payee::{PayeeContext, PayeeState};

/// The request a payment is presented with.
#[derive(Clone, Copy, Debug)]
pub struct PricedRequest<'a> {
    /// The absolute URL nonces and tickets are bound to.
    pub url: &'a str,
    /// `GET` or `HEAD`: the only requests a charged ticket reloads for free.
    pub safe: bool,
    /// What the request costs (zero for a free resource).
    pub price: Amount,
    /// The offer the server makes for this request (its nonce aside), `None` for a free
    /// resource: a payment answering an offer must have accepted it.
    pub offer: Option<&'a PaymentRequirements>,
}

/// What the server knows besides the channel.
pub struct ChargeContext<'a> {
    /// The channel rules, the server's key and the chain tip.
    pub payee: &'a PayeeContext<'a>,
    /// The public key of `payee.key`.
    pub server_key: &'a PublicKey,
    /// The payment key of a channel (its contract txid and client key):
    /// [`PaymentKey::derive`] with `payee.key`. A server may remember it per channel, since
    /// deriving it costs an ECDH.
    pub payment_key: &'a dyn Fn(&Txid, &PublicKey) -> PaymentKey,
    /// The server's CAIP-2 network id.
    pub network: &'a str,
    /// The key the server issues nonces with.
    pub nonces: &'a NonceKey,
    /// Unix seconds now.
    pub now: u64,
    /// `maxTimeoutSeconds`: how long a charged nonce reloads its resource.
    pub offer_life: u64,
    /// What the channel may consume in all until its contract confirms; `None` once it has.
    pub unconfirmed_allowance: Option<Amount>,
}

/// The channel as the store holds it, with what it knows of the header's ticket.
#[derive(Clone, Copy, Debug)]
pub struct Stored<'a> {
    /// The channel's state.
    pub state: &'a PayeeState,
    /// Its ledger.
    pub ledger: Ledger,
    /// The resource URL the header's ticket was charged at, if it was (`""` for a nonce
    /// charged before tickets recorded their resource: a nonce is bound to its URL anyway).
    pub ticket_charged_at: Option<&'a str>,
}

/// What to do with an accepted payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The ticket already paid for this resource: serve again, charge nothing, store nothing.
    Reload,
    /// Serve the request. If the site's answer is a success (2xx), store `state`, `charged`
    /// and the ticket as charged at the URL, then send the answer; otherwise store `state` and
    /// `credited` (any increment stays as credit) and charge nothing.
    Serve(Box<Charge>),
}

/// The writes an accepted payment leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    /// The channel's new state (its best payment, if the header carried a better one).
    pub state: PayeeState,
    /// The ledger with the header's payment counted and nothing charged.
    pub credited: Ledger,
    /// The ledger after charging the price.
    pub charged: Ledger,
    /// The ticket the charge spends, recorded with the URL; `None` when the price is zero.
    pub ticket: Option<String>,
    /// The payment is pre-armed (no nonce): a charge issues a nonce for the URL, recorded as
    /// charged with it, that the client reloads the URL with (`receipt.nonce`).
    pub pre_armed: bool,
}

impl Charge {
    /// Whether a failed answer changes the stored channel (an increment to keep as credit).
    pub fn credits(&self, stored: &PayeeState, ledger: Ledger) -> bool {
        self.state != *stored || self.credited != ledger
    }
}

/// Why a payment was not taken. Nothing is charged; `keep`, if set, is stored first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Refused, or deferred until the contract confirms.
    pub reason: Reason,
    /// For the log.
    pub why: String,
    /// The channel as the refusal leaves it, for the receipt; `None` before the header was
    /// shown to come from the channel's client.
    pub account: Option<Box<(PayeeState, Ledger)>>,
    /// The increment the header carried, to store before refusing: an accepted update is kept
    /// as credit even when the request is refused.
    pub keep: bool,
}

/// Why a payment was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A refusal, answered with a fresh 402 offer.
    Refused(Refusal),
    /// The channel has consumed what it may on an unconfirmed contract: a 503, retried later.
    Unconfirmed,
}

fn refused(reason: Refusal, why: impl Into<String>) -> Refused {
    Refused {
        reason: Reason::Refused(reason),
        why: why.into(),
        account: None,
        keep: false,
    }
}

/// Decides on `sig`, presented with `request`, given the channel the store holds (`None`: no
/// channel with the header's contract txid). In the order of `docs/protocol.md` section 2.
pub fn decide(
    stored: Option<Stored<'_>>,
    sig: &PaymentSignature,
    request: &PricedRequest<'_>,
    ctx: &ChargeContext<'_>,
) -> Result<Decision, Refused> {
    if sig.accepted.network != ctx.network {
        return Err(refused(Refusal::WrongNetwork, "another network"));
    }
    if sig.accepted.pay_to != *ctx.server_key {
        return Err(refused(Refusal::WrongPayee, "another payee key"));
    }
    let payment = &sig.payload;
    // A payment answering an offer names it, as x402 requires. A pre-armed payment (and the
    // reload of what it charged) was made before this request's offer: it names the site's
    // last offer, which is Trickle's extension (docs/protocol.md section 2).
    let answers_offer = payment.nonce.as_ref() == Some(&sig.accepted.extra.nonce);
    if let Some(offer) = request.offer.filter(|_| answers_offer) {
        if !offer.matches(&sig.accepted) {
            return Err(refused(
                Refusal::InvalidPaymentRequirements,
                "accepted is not this resource's offer",
            ));
        }
    }
    let issued_at = match &payment.nonce {
        Some(nonce) => Some(
            ctx.nonces
                .check(nonce, request.url)
                .map_err(|e| refused(Refusal::WrongResource, e.to_string()))?,
        ),
        None => None,
    };
    let unknown = || {
        refused(
            Refusal::Channel(ErrorCode::UnknownChannel),
            "no channel with this contract",
        )
    };
    let stored = stored.ok_or_else(unknown)?;
    let channel = stored.state.channel().ok_or_else(unknown)?;
    if channel.contract_txid() != payment.channel {
        return Err(unknown());
    }
    let key = (ctx.payment_key)(&payment.channel, &channel.funding.contract.client_key);
    if !key.check(sig) {
        return Err(refused(
            Refusal::BadAuthorization,
            "the header is not authorised by the channel's client key",
        ));
    }
    let account = Some(Box::new((stored.state.clone(), stored.ledger)));
    let refuse = |reason: Refusal, why: &str| Refused {
        account: account.clone(),
        ..refused(reason, why)
    };
    let ticket = match (&payment.nonce, &payment.ticket) {
        (Some(nonce), None) => nonce,
        (None, Some(ticket))
            if URL_SAFE_NO_PAD
                .decode(ticket)
                .is_ok_and(|t| t.len() == TICKET_LEN) =>
        {
            ticket
        }
        _ => {
            return Err(refuse(
                Refusal::InvalidHeader,
                "a payment carries a nonce or a ticket of 16 bytes, not both",
            ))
        }
    };
    if let Some(at) = stored.ticket_charged_at {
        // A nonce is bound to its URL by the server's MAC; a ticket by the URL recorded when
        // it was charged.
        if issued_at.is_none() && at != request.url {
            return Err(refuse(
                Refusal::WrongResource,
                "the ticket paid for another resource",
            ));
        }
        // A nonce reloads only within the offer's life; a ticket has no issue time, and
        // reloads the one resource it paid.
        let in_time = issued_at.is_none_or(|t| ctx.now <= t.saturating_add(ctx.offer_life));
        if !(request.safe && in_time) {
            return Err(refuse(
                Refusal::NonceSpent,
                "ticket already charged; not a GET or HEAD within its life",
            ));
        }
        return Ok(Decision::Reload);
    }
    let PayeeState::Ready { .. } = stored.state else {
        let code = match stored.state {
            PayeeState::Closing { .. } | PayeeState::Closed { .. } => ErrorCode::ChannelClosed,
            _ => ErrorCode::UnknownChannel,
        };
        return Err(refuse(Refusal::Channel(code), "channel is not open"));
    };
    let mut state = stored.state.clone();
    let update = payment
        .update()
        .map_err(|e| refuse(Refusal::InvalidHeader, &e.to_string()))?;
    if let Some(update) = update {
        let value = channel.funding.contract.value;
        if value.checked_sub(update.client_change) != Some(payment.amount) {
            return Err(refuse(
                Refusal::InvalidHeader,
                "amount is not the channel value minus the update's change",
            ));
        }
        // The PAYMENT_ACK the step would send is answered by the receipt instead.
        match stored
            .state
            .on_message(ctx.payee, WireMessage::UpdatePayment(update))
        {
            Ok(step) => state = step.state,
            Err(e) => return Err(refuse(Refusal::Channel(e.code()), &e.to_string())),
        }
    }
    let paid = state.channel().map(|c| c.paid()).unwrap_or_default();
    let credited = stored.ledger.with_paid(paid);
    let keep = state != *stored.state || credited != stored.ledger;
    let not_taken = |reason: Reason, why: &str| Refused {
        reason,
        why: why.to_owned(),
        account: Some(Box::new((state.clone(), credited))),
        keep,
    };
    let Ok(charged) = credited.charge(request.price) else {
        return Err(not_taken(
            Reason::Refused(Refusal::InsufficientCredit),
            "credit does not cover the price",
        ));
    };
    // Until its contract confirms, a channel consumes no more than the allowance: the client
    // can still double-spend the contract's inputs.
    if ctx
        .unconfirmed_allowance
        .is_some_and(|allowance| charged.consumed > allowance)
    {
        return Err(not_taken(
            Reason::Unconfirmed,
            "the contract is not confirmed yet",
        ));
    }
    let priced = request.price > Amount::ZERO;
    Ok(Decision::Serve(Box::new(Charge {
        state,
        credited,
        charged,
        ticket: priced.then(|| ticket.clone()),
        pre_armed: payment.nonce.is_none(),
    })))
}
