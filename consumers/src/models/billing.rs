//! Billing ledger: balances and ledgers per user and currency.
//!
//! Keys: `payment/<payment_id>` → [`PaymentRecord`],
//! `balance/<user>/<currency>` → i64 minor units,
//! `ledger/<user>/<seq:be64>` → [`LedgerEntry`].
//!
//! Invalid events are permanent failures (dead-lettered with the reason): a
//! non-positive amount, a duplicate payment id, a refund of an unknown
//! payment, of another user's payment, in another currency, or above what
//! remains of the payment.

use backbone_schemas::{
    Envelope, Event,
    payment::v1::{PaymentReceived, PaymentRefunded},
};
use serde::{Deserialize, Serialize};

use crate::{
    error::{HandlerError, StoreError},
    model::{ReadModel, overflow, typed},
    store::{ProjectionStore, decode_json},
    transaction::{Transaction, key, prefix},
};

/// The billing read model.
#[derive(Debug, Default, Clone, Copy)]
pub struct Billing;

/// A payment as the ledger remembers it, for validating refunds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    /// The paying user.
    pub user_id: String,
    /// The amount paid, minor units.
    pub amount_minor: i64,
    /// The currency.
    pub currency: String,
    /// How much was refunded so far.
    pub refunded_minor: i64,
}

/// One ledger line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The event's stream sequence.
    pub seq: u64,
    /// The payment concerned.
    pub payment_id: String,
    /// The refund id, for refunds.
    pub refund_id: Option<String>,
    /// Signed amount: positive for payments, negative for refunds.
    pub amount_minor: i64,
    /// The currency.
    pub currency: String,
}

fn balance_key(user: &str, currency: &str) -> Vec<u8> {
    key(&[b"balance", user.as_bytes(), currency.as_bytes()])
}

fn payment_key(id: &str) -> Vec<u8> {
    key(&[b"payment", id.as_bytes()])
}

impl Billing {
    fn post(
        tx: &mut Transaction<'_>,
        seq: u64,
        user: &str,
        entry: &LedgerEntry,
    ) -> Result<(), HandlerError> {
        let k = balance_key(user, &entry.currency);
        let balance: i64 = tx.get_json(&k)?.unwrap_or(0);
        let next = balance.checked_add(entry.amount_minor).ok_or_else(|| {
            overflow(
                &format!("balance of {user} in {}", entry.currency),
                balance,
                entry.amount_minor,
            )
        })?;
        tx.put_json(&k, &next);
        tx.put_json(
            &key(&[b"ledger", user.as_bytes(), &seq.to_be_bytes()]),
            entry,
        );
        Ok(())
    }

    fn received(
        seq: u64,
        e: PaymentReceived,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        if e.amount_minor <= 0 {
            return Err(HandlerError::permanent(format!(
                "payment {} has non-positive amount {}",
                e.payment_id, e.amount_minor
            )));
        }
        if e.currency.is_empty() || e.payment_id.is_empty() {
            return Err(HandlerError::permanent("payment without id or currency"));
        }
        if tx.get(&payment_key(&e.payment_id))?.is_some() {
            return Err(HandlerError::permanent(format!(
                "duplicate payment id {}",
                e.payment_id
            )));
        }
        let record = PaymentRecord {
            user_id: e.user_id.clone(),
            amount_minor: e.amount_minor,
            currency: e.currency.clone(),
            refunded_minor: 0,
        };
        tx.put_json(&payment_key(&e.payment_id), &record);
        let entry = LedgerEntry {
            seq,
            payment_id: e.payment_id,
            refund_id: None,
            amount_minor: e.amount_minor,
            currency: e.currency,
        };
        Self::post(tx, seq, &e.user_id, &entry)
    }

    fn refunded(
        seq: u64,
        e: PaymentRefunded,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        let Some(mut payment) = tx.get_json::<PaymentRecord>(&payment_key(&e.payment_id))? else {
            return Err(HandlerError::permanent(format!(
                "refund {} of unknown payment {}",
                e.refund_id, e.payment_id
            )));
        };
        if payment.user_id != e.user_id || payment.currency != e.currency {
            return Err(HandlerError::permanent(format!(
                "refund {} does not match payment {} (user or currency)",
                e.refund_id, e.payment_id
            )));
        }
        // Both are validated non-negative with refunded <= amount, so this
        // cannot overflow; checked anyway, as every ledger sum is.
        let remaining = payment
            .amount_minor
            .checked_sub(payment.refunded_minor)
            .ok_or_else(|| {
                overflow(
                    &format!("remainder of payment {}", e.payment_id),
                    payment.amount_minor,
                    payment.refunded_minor,
                )
            })?;
        if e.amount_minor <= 0 || e.amount_minor > remaining {
            return Err(HandlerError::permanent(format!(
                "refund {} of {} {} exceeds the {} {} remaining of payment {}",
                e.refund_id, e.amount_minor, e.currency, remaining, payment.currency, e.payment_id
            )));
        }
        payment.refunded_minor = payment
            .refunded_minor
            .checked_add(e.amount_minor)
            .ok_or_else(|| {
                overflow(
                    &format!("refunded total of payment {}", e.payment_id),
                    payment.refunded_minor,
                    e.amount_minor,
                )
            })?;
        tx.put_json(&payment_key(&e.payment_id), &payment);
        let entry = LedgerEntry {
            seq,
            payment_id: e.payment_id,
            refund_id: Some(e.refund_id),
            amount_minor: -e.amount_minor,
            currency: e.currency,
        };
        Self::post(tx, seq, &e.user_id, &entry)
    }

    /// `user`'s balance in `currency`, minor units.
    pub fn balance(store: &ProjectionStore, user: &str, currency: &str) -> Result<i64, StoreError> {
        Ok(store.get_json(&balance_key(user, currency))?.unwrap_or(0))
    }

    /// `user`'s balances by currency, sorted by currency.
    pub fn balances(store: &ProjectionStore, user: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let p = prefix(&[b"balance", user.as_bytes()]);
        store
            .scan_prefix(&p)
            .map(|e| {
                let (k, v) = e?;
                Ok((
                    String::from_utf8_lossy(&k[p.len()..]).into_owned(),
                    decode_json(&v)?,
                ))
            })
            .collect()
    }

    /// `user`'s ledger, oldest first.
    pub fn ledger(store: &ProjectionStore, user: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        let p = prefix(&[b"ledger", user.as_bytes()]);
        store
            .scan_prefix(&p)
            .map(|e| e.and_then(|(_, v)| decode_json(&v)))
            .collect()
    }

    /// A payment's record.
    pub fn payment(
        store: &ProjectionStore,
        payment_id: &str,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        store.get_json(&payment_key(payment_id))
    }
}

impl ReadModel for Billing {
    fn name(&self) -> &'static str {
        "billing"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &[PaymentReceived::TYPE, PaymentRefunded::TYPE]
    }

    fn apply(
        &self,
        seq: u64,
        event: &Envelope,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        match event.event_type.as_str() {
            PaymentReceived::TYPE => Self::received(seq, typed(event)?, tx),
            PaymentRefunded::TYPE => Self::refunded(seq, typed(event)?, tx),
            other => Err(HandlerError::permanent(format!(
                "billing cannot apply {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::testing::{apply_all, payment, refund};

    #[test]
    fn payments_and_refunds_build_balances_and_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProjectionStore::open(dir.path()).unwrap();
        apply_all(
            &Billing,
            &store,
            vec![
                payment("u-1", "p-1", 1000, "USD"),
                payment("u-1", "p-2", 500, "EUR"),
                refund("u-1", "r-1", "p-1", 300, "USD"),
            ],
        );
        assert_eq!(Billing::balance(&store, "u-1", "USD").unwrap(), 700);
        assert_eq!(
            Billing::balances(&store, "u-1").unwrap(),
            vec![("EUR".into(), 500), ("USD".into(), 700)]
        );
        let amounts: Vec<_> = Billing::ledger(&store, "u-1")
            .unwrap()
            .iter()
            .map(|e| e.amount_minor)
            .collect();
        assert_eq!(amounts, vec![1000, 500, -300]);
        assert_eq!(
            Billing::payment(&store, "p-1")
                .unwrap()
                .unwrap()
                .refunded_minor,
            300
        );
    }

    #[test]
    fn invalid_events_are_permanent_failures() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProjectionStore::open(dir.path()).unwrap();
        apply_all(&Billing, &store, vec![payment("u-1", "p-1", 1000, "USD")]);
        let cases = [
            refund("u-1", "r-1", "p-1", 1001, "USD"),
            refund("u-1", "r-2", "p-9", 1, "USD"),
            refund("u-2", "r-3", "p-1", 1, "USD"),
            refund("u-1", "r-4", "p-1", 1, "EUR"),
            payment("u-1", "p-1", 5, "USD"),
            payment("u-1", "p-3", 0, "USD"),
        ];
        for event in cases {
            let mut tx = store.transaction();
            let err = Billing.apply(9, &event, &mut tx).unwrap_err();
            assert!(matches!(err, HandlerError::Permanent(_)), "{err}");
        }
        assert_eq!(Billing::balance(&store, "u-1", "USD").unwrap(), 1000);
    }
}
