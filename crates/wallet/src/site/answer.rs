//! Answering a site's 402: the offer checked, a channel opened if needed, the payment signed
//! and reserved in one write.

use super::*;

/// A staged payment with its reservation (see [`Wallet::reserve_signed`]).
pub(super) enum Reserved {
    /// The reservation, the payment and its outstanding increment: one write.
    Writes {
        /// The writes.
        writes: WriteBatch,
        /// What the payment newly signs (zero when paid from credit).
        signed: Amount,
    },
    /// The budget has less left than the payment needs; nothing staged.
    TooLittleLeft {
        /// What the payment needs.
        needed: Amount,
    },
}

impl<S: Store> Wallet<S> {
    /// The open channel with `site` once `base` is, if any (one that can take payments).
    pub(super) async fn open_channel_with(
        &self,
        base: &WriteBatch,
        site: &str,
    ) -> Result<Option<ChannelRecord>, ChannelClientError> {
        Ok(self
            .channels_in(base)
            .await?
            .into_iter()
            .find(|r| r.site == site && matches!(r.state.state, PayerState::Ready { .. })))
    }

    /// The payee key of the site's channel that is not yet settled or refunded, if any: an
    /// offer with another key is refused.
    pub(super) async fn pinned_payee(
        &self,
        base: &WriteBatch,
        site: &str,
    ) -> Result<Option<PublicKey>, ChannelClientError> {
        Ok(self
            .channels_in(base)
            .await?
            .into_iter()
            .find(|r| r.site == site && r.state.state.committed_channel().is_some())
            .map(|r| r.payee_key))
    }

    /// Answers the 402 of `url` whose `PAYMENT-REQUIRED` header is `header` (see the
    /// [module documentation](crate::site)). `confirmed`: the user approved this payment.
    ///
    /// Opening a channel is stored step by step as it goes. The payment itself is staged: its
    /// reservation, the signed state and the outstanding increment, committed with
    /// `(&wallet, &approver)` in one write before the header can be had.
    pub async fn answer_offer<A: Approver, T: Transport, C: ChainSource>(
        &mut self,
        approver: &A,
        ctx: &PayContext<'_, T, C>,
        url: &str,
        header: &str,
        confirmed: bool,
    ) -> Result<Staged<Answer>, PayError> {
        let nothing = WriteBatch::new();
        let required =
            PaymentRequired::from_header(header).map_err(|e| PayError::BadHeader(e.to_string()))?;
        let origin = crate::budget::site_origin(url).map_err(|_| OfferError::BadUrl(url.into()))?;
        let budget = approver.budget_in(&nothing, &origin).await?;
        let pinned = self.pinned_payee(&nothing, &origin).await?;
        let offer = check_offer(
            &required,
            &OfferContext {
                url,
                network: ctx.network,
                budget: budget.as_ref(),
                pinned_payee: pinned.as_ref(),
                policy: ctx.policy,
            },
        )?;
        let channel = match self.open_channel_with(&nothing, offer.origin()).await? {
            Some(channel) => Some(channel),
            None => self.finish_opening(ctx, &offer).await?,
        };
        let ask = |wallet: &mut Self, reason| -> Answer {
            let terms = budget.as_ref().map(|b| *b.terms());
            wallet.ask(&offer, url, reason, terms, channel.is_some(), ctx)
        };
        match offer.approval() {
            Approval::NoBudget => return Ok(Staged::new(ask(self, AskReason::NoBudget), nothing)),
            Approval::Prompt if !confirmed => {
                return Ok(Staged::new(ask(self, AskReason::Confirm), nothing))
            }
            Approval::Prompt | Approval::Auto => {}
        }
        let budget = budget.as_ref().ok_or(BudgetError::NoBudget {
            origin: origin.clone(),
        })?;

        let mut signed = Amount::ZERO;
        if channel.is_none() {
            let value = offer.channel_value(
                approver.channel_wish(budget, offer.min_channel_value()),
                &ctx.policy.limits,
            )?;
            // A lock above the limit is the user's to approve, whatever the auto-approve
            // threshold: else a site's page could search the balance with forged offers, each
            // opening it cannot fund refused and the first it can paid, without anyone asked.
            let limit = budget.terms().limit;
            if value > limit && !confirmed {
                let reason = AskReason::LockAboveLimit { lock: value, limit };
                return Ok(Staged::new(ask(self, reason), nothing));
            }
            match self.open_for(approver, ctx, &offer, value).await? {
                Some(first) => signed += first,
                None => {
                    let reason = self
                        .exhausted(approver, &offer, offer.min_payment(), ctx.now)
                        .await?;
                    return Ok(Staged::new(ask(self, reason), nothing));
                }
            }
        }

        let nothing = WriteBatch::new();
        let (header, paid) = self
            .pay(
                &nothing,
                offer.origin(),
                offer.requirements(),
                offer.resource(),
                Some(offer.nonce().to_owned()),
                ctx.tip,
            )
            .await?
            .into_parts();
        match self
            .reserve_signed(&nothing, approver, &origin, offer.payee(), paid, ctx.now)
            .await?
        {
            Reserved::Writes {
                writes,
                signed: now_signed,
            } => Ok(Staged::new(
                Answer::Pay {
                    header,
                    signed: signed + now_signed,
                },
                writes,
            )),
            Reserved::TooLittleLeft { needed } => {
                let reason = self.exhausted(approver, &offer, needed, ctx.now).await?;
                Ok(Staged::new(ask(self, reason), WriteBatch::new()))
            }
        }
    }

    /// Reserves what `paid` (a payment to `origin` staged on top of `base`, not yet committed)
    /// newly signs, and stages the reservation, the payment and its outstanding increment as
    /// one write: what is reserved is what was signed, measured on the signed state itself, and
    /// nothing signed is stored (or leaves) without its reservation.
    pub(super) async fn reserve_signed<A: Approver>(
        &self,
        base: &WriteBatch,
        approver: &A,
        origin: &str,
        payee: &PublicKey,
        paid: WriteBatch,
        now: u64,
    ) -> Result<Reserved, PayError> {
        let total = |record: Option<ChannelRecord>| {
            record
                .and_then(|r| r.state.state.committed_channel().map(|c| c.paid()))
                .unwrap_or(Amount::ZERO)
        };
        let before = total(self.channel_in(base, origin, payee).await?);
        let mut view = base.clone();
        view.merge(paid.clone());
        let after = total(self.channel_in(&view, origin, payee).await?);
        let signed = after.checked_sub(before).unwrap_or(Amount::ZERO);
        if signed == Amount::ZERO {
            return Ok(Reserved::Writes {
                writes: paid,
                signed,
            });
        }
        let (id, mut writes) =
            match approval::stage(approver, base, origin, |b| b.reserve(signed, now)).await {
                Ok(staged) => staged.into_parts(),
                Err(BudgetError::WouldExceed { .. }) => {
                    return Ok(Reserved::TooLittleLeft { needed: signed })
                }
                Err(e) => return Err(e.into()),
            };
        writes.merge(paid);
        let mut view = base.clone();
        view.merge(writes.clone());
        self.stage_outstanding(&view, &mut writes, origin, payee, id)
            .await?;
        Ok(Reserved::Writes { writes, signed })
    }

    /// The site's channel whose opening was cut short after its contract was handed over (the
    /// worker stopped, the answer was lost), completed now; `None` if there is none. Opening
    /// another instead would replace its record, and with it the channel's refund.
    pub(super) async fn finish_opening<T: Transport, C: ChainSource>(
        &mut self,
        ctx: &PayContext<'_, T, C>,
        offer: &CheckedOffer,
    ) -> Result<Option<ChannelRecord>, PayError> {
        let opening = self
            .channel(offer.origin(), offer.payee())
            .await?
            .is_some_and(|r| matches!(r.state.state, PayerState::AwaitingOpen { .. }));
        if !opening {
            return Ok(None);
        }
        (ctx.progress)(Progress::Completing {
            origin: offer.origin(),
        });
        let record = self
            .complete_open(ctx.transport, ctx.chain, offer.origin(), offer.payee())
            .await?;
        Ok(matches!(record.state.state, PayerState::Ready { .. }).then_some(record))
    }

    /// Opens a channel of `value` for `offer`, its first payment reserved in the budget before
    /// it is signed and committed once the payee acknowledged it (in the opening exchange).
    /// The reservation is the offer's first payment, and the opening signs no more than it
    /// (`open_channel` refuses a payee asking more). Returns what was signed; `None` when the
    /// budget has too little left for the first payment.
    pub(super) async fn open_for<A: Approver, T: Transport, C: ChainSource>(
        &mut self,
        approver: &A,
        ctx: &PayContext<'_, T, C>,
        offer: &CheckedOffer,
        value: Amount,
    ) -> Result<Option<Amount>, PayError> {
        let first = offer.min_payment();
        let id = match approval::change(self, approver, offer.origin(), |b| {
            b.reserve(first, ctx.now)
        })
        .await
        {
            Ok(id) => id,
            Err(BudgetError::WouldExceed { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // The preview: the contract is built by the same deterministic coin selection.
        let fee = self.open_fee(value, ctx.fee_rate).ok();
        (ctx.progress)(Progress::Opening {
            origin: offer.origin(),
            value,
            fee,
            fee_rate: ctx.fee_rate,
        });
        let opened = self
            .open_channel(
                ctx.transport,
                ctx.chain,
                OpenParams {
                    site: offer.origin(),
                    offer: offer.requirements(),
                    value,
                    first_payment: first,
                    limits: &ctx.policy.limits,
                    fee_rate: ctx.fee_rate,
                    now: ctx.now,
                },
            )
            .await;
        match opened {
            Ok(record) => {
                let (signed, acknowledged) = record
                    .state
                    .state
                    .committed_channel()
                    .map_or((Amount::ZERO, Amount::ZERO), |c| (c.paid(), c.acknowledged));
                // What the payee acknowledged of the first payment is spent. What it did not
                // acknowledge but was signed stays reserved until a receipt or `reconcile`
                // settles it; what was reserved but not signed is released.
                let spent = acknowledged.min(signed);
                if spent > Amount::ZERO {
                    approval::change(self, approver, offer.origin(), |b| {
                        b.commit_part(id, spent, ctx.now)
                    })
                    .await?;
                }
                if spent < signed {
                    self.record_outstanding(offer.origin(), offer.payee(), id)
                        .await?;
                } else if spent < first {
                    approval::change(self, approver, offer.origin(), |b| b.release(id)).await?;
                }
                Ok(Some(signed))
            }
            Err(e) => {
                // The opening failed: the first payment was either never signed or is in a
                // channel the payee never acknowledged. Keep the reservation in the latter case.
                let signed = self
                    .channel(offer.origin(), offer.payee())
                    .await?
                    .and_then(|r| r.state.state.committed_channel().map(|c| c.paid()))
                    .is_some_and(|p| p > Amount::ZERO);
                if signed {
                    // Settled by `reconcile` once the payee says what it holds.
                    self.record_outstanding(offer.origin(), offer.payee(), id)
                        .await?;
                } else {
                    approval::change(self, approver, offer.origin(), |b| b.release(id)).await?;
                }
                Err(e.into())
            }
        }
    }
}
