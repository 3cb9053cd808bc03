//! The log of webhooks the fake has sent, and re-sending one of them.

use crate::webhook::{WebhookError, WebhookSender, delivery_headers};
use serde_json::Value;
use std::time::Instant;
use uuid::Uuid;

/// One webhook delivery the fake sent (all attempts of it), as the receiver saw it.
///
/// Found in [`RunningFake::webhook_log`](crate::RunningFake::webhook_log); a test can wait
/// for one with [`RunningFake::wait_for_webhooks`](crate::RunningFake::wait_for_webhooks) and
/// send it again with [`RunningFake::redeliver`](crate::RunningFake::redeliver) or
/// [`RunningFake::replay`](crate::RunningFake::replay).
#[derive(Debug, Clone)]
pub struct SentWebhook {
    /// When the delivery ended (answered, or every attempt failed).
    pub at: Instant,
    /// The target URL.
    pub url: String,
    /// The request headers of the last attempt, in the order sent (`X-Plane-Delivery` is the
    /// last attempt's).
    pub headers: Vec<(String, String)>,
    /// The exact body bytes sent and signed.
    pub body: Vec<u8>,
    /// The receiver's answer status; `None` when every attempt failed in transport.
    pub status: Option<u16>,
    /// `X-Plane-Delivery` of every attempt, in order.
    pub delivery_ids: Vec<Uuid>,
}

impl SentWebhook {
    pub(crate) fn new(url: &str, event: &str, sent: crate::WebhookDelivery) -> SentWebhook {
        let last = sent.delivery_ids.last().copied().unwrap_or_else(Uuid::nil);
        SentWebhook {
            at: Instant::now(),
            url: url.to_owned(),
            headers: delivery_headers(last, event, &sent.signature)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            body: sent.body,
            status: sent.status,
            delivery_ids: sent.delivery_ids,
        }
    }

    /// A header's value (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `X-Plane-Event` (`issue`, `project`, `issue_comment`, ...).
    pub fn event(&self) -> &str {
        self.header("X-Plane-Event").unwrap_or("")
    }

    /// The body parsed as JSON (`Null` if it is not JSON, e.g. a hand-made raw body).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Sends the same body and signature to the same URL once more. With `same_id` the
    /// request is byte-identical (`X-Plane-Delivery` included); otherwise it carries a new
    /// delivery id, as Plane's own retries do.
    pub(crate) async fn resend(&self, same_id: bool) -> Result<SentWebhook, WebhookError> {
        let signature = self.header("X-Plane-Signature").unwrap_or("").to_owned();
        if !same_id {
            let sent = WebhookSender::new("")
                .max_attempts(1)
                .raw(&self.url, self.event(), self.body.clone(), Some(signature))
                .await?;
            return Ok(SentWebhook::new(&self.url, self.event(), sent));
        }
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(WebhookError::Client)?;
        let mut request = client.post(&self.url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let status = match request.body(self.body.clone()).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let _ = resp.bytes().await;
                Some(status)
            }
            Err(e) => {
                tracing::debug!(url = %self.url, error = %e, "webhook replay failed");
                None
            }
        };
        let last = self.delivery_ids.last().copied().unwrap_or_else(Uuid::nil);
        Ok(SentWebhook {
            at: Instant::now(),
            status,
            delivery_ids: vec![last],
            ..self.clone()
        })
    }
}

impl crate::RunningFake {
    /// Every webhook delivery the fake has sent so far, in the order they ended (API writes,
    /// web-app writes, re-sends), with the receiver's answer.
    pub fn webhook_log(&self) -> Vec<SentWebhook> {
        crate::server::lock(&self.inner.shared.webhook_log).clone()
    }

    /// Waits until at least `n` deliveries have ended and returns the whole log. Wrap it in
    /// a timeout: it waits forever if nothing triggers enough deliveries.
    pub async fn wait_for_webhooks(&self, n: usize) -> Vec<SentWebhook> {
        let shared = &self.inner.shared;
        loop {
            let ended = shared.webhook_done.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            {
                let log = crate::server::lock(&shared.webhook_log);
                if log.len() >= n {
                    return log.clone();
                }
            }
            ended.await;
        }
    }

    /// Waits until no delivery is queued or under way (returns at once if none is).
    pub async fn webhooks_settled(&self) {
        let shared = &self.inner.shared;
        loop {
            let ended = shared.webhook_done.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if shared
                .webhooks_pending
                .load(std::sync::atomic::Ordering::SeqCst)
                == 0
            {
                return;
            }
            ended.await;
        }
    }

    /// Sends a logged delivery again, same body and signature, with a new
    /// `X-Plane-Delivery`: what Plane's own retry (or a re-sent identical event) looks like.
    /// The re-send is logged too.
    pub async fn redeliver(&self, sent: &SentWebhook) -> Result<SentWebhook, WebhookError> {
        let again = sent.resend(false).await?;
        self.inner.shared.log_webhook(again.clone());
        Ok(again)
    }

    /// Sends a logged delivery again byte for byte, `X-Plane-Delivery` included (a network
    /// duplicate). The re-send is logged too.
    pub async fn replay(&self, sent: &SentWebhook) -> Result<SentWebhook, WebhookError> {
        let again = sent.resend(true).await?;
        self.inner.shared.log_webhook(again.clone());
        Ok(again)
    }
}
