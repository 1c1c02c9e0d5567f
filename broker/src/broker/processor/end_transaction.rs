//! END_TRANSACTION (37): a producer's commit or rollback of a half message, sent oneway
//! after its local transaction or in answer to CHECK_TRANSACTION_STATE.

use message::sysflag;
use protocol::header::EndTransactionRequestHeader;
use protocol::RemotingCommand;
use tracing::{debug, warn};

use super::{header, success};
use crate::broker::transaction::{self, Decision};
use crate::broker::Broker;

pub async fn process(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let header: EndTransactionRequestHeader = header!(request);
    let decision = match header.commit_or_rollback {
        sysflag::TRANSACTION_COMMIT => Decision::Commit,
        sysflag::TRANSACTION_ROLLBACK => Decision::Rollback,
        // UNKNOW: nothing to do; the checker asks again later.
        _ => {
            debug!(transaction = ?header.transaction_id, "transaction state unknown");
            return success(request);
        }
    };
    match transaction::decide(
        broker,
        &header.producer_group,
        header.commit_log_offset,
        header.tran_state_table_offset,
        decision,
    )
    .await
    {
        Ok(applied) => {
            if !applied {
                debug!(msg_id = %header.msg_id, ?decision, "transaction decided already");
            }
            success(request)
        }
        Err(refusal) => {
            // The request is oneway: the producer never reads this answer, so say it here.
            warn!(msg_id = %header.msg_id, ?decision, reason = %refusal.1, "END_TRANSACTION refused");
            refusal.answer(request)
        }
    }
}
