//! Typed calls used by the operator, the bench tool and tests. Each builds the request from a
//! typed header, checks the response code and decodes the answer; any code the call does not
//! treat as a normal outcome becomes [`Error::Remote`].

use bytes::Bytes;
use message::StoredMessage;

use super::Client;
use crate::body::{
    self, decode_pulled_messages, ClusterInfo, ConsumerListByGroupResponseBody, HeartbeatData,
    TopicList, TopicRouteData,
};
use crate::code::{RequestCode, ResponseCode};
use crate::command::RemotingCommand;
use crate::error::{Error, Result};
use crate::header::{
    BoundaryType, CreateTopicRequestHeader, GetConsumerListByGroupRequestHeader,
    GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader, GetMinOffsetRequestHeader,
    GetMinOffsetResponseHeader, GetRouteInfoRequestHeader, PullMessageRequestHeader,
    PullMessageResponseHeader, QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader,
    SearchOffsetRequestHeader, SearchOffsetResponseHeader, SendMessageRequestHeader,
    SendMessageRequestHeaderV2, SendMessageResponseHeader, UnregisterClientRequestHeader,
    UpdateConsumerOffsetRequestHeader,
};

/// Outcome of a send the broker stored (SUCCESS, or one of the flush/slave warnings that Java
/// also counts as stored).
#[derive(Debug, Clone, PartialEq)]
pub struct SendResult {
    /// 0, 10 FLUSH_DISK_TIMEOUT, 11 SLAVE_NOT_AVAILABLE or 12 FLUSH_SLAVE_TIMEOUT.
    pub code: i32,
    pub header: SendMessageResponseHeader,
}

/// How a pull ended, as the Java client classifies response codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    /// SUCCESS: the body holds records.
    Found,
    /// PULL_NOT_FOUND (19).
    NoNewMessage,
    /// PULL_RETRY_IMMEDIATELY (20).
    NoMatchedMessage,
    /// PULL_OFFSET_MOVED (21): continue from `next_begin_offset`.
    OffsetIllegal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PullResult {
    pub status: PullStatus,
    pub header: PullMessageResponseHeader,
    /// Concatenated stored records (empty unless [`PullStatus::Found`]).
    pub body: Bytes,
}

impl PullResult {
    /// The pulled records, borrowed from the body.
    pub fn messages(&self) -> Result<Vec<StoredMessage<'_>>> {
        decode_pulled_messages(&self.body)
    }
}

pub(super) fn remote_error(response: RemotingCommand) -> Error {
    Error::Remote {
        code: response.code,
        remark: response.remark,
    }
}

pub(super) fn expect_success(response: RemotingCommand) -> Result<RemotingCommand> {
    if response.code == ResponseCode::Success.as_i32() {
        Ok(response)
    } else {
        Err(remote_error(response))
    }
}

impl Client {
    async fn call(&self, command: RemotingCommand) -> Result<RemotingCommand> {
        self.invoke(command, self.default_timeout()).await
    }

    /// GET_ROUTEINFO_BY_TOPIC. An unknown topic is `Error::Remote { code: 17, .. }`.
    pub async fn get_route_info(&self, topic: &str) -> Result<TopicRouteData> {
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            accept_standard_json_only: None,
        };
        let response = expect_success(
            self.call(RemotingCommand::request(
                RequestCode::GetRouteinfoByTopic,
                &header,
            ))
            .await?,
        )?;
        TopicRouteData::decode(&response.body)
    }

    /// GET_BROKER_CLUSTER_INFO.
    pub async fn get_cluster_info(&self) -> Result<ClusterInfo> {
        let response = expect_success(
            self.call(RemotingCommand::request(
                RequestCode::GetBrokerClusterInfo,
                &(),
            ))
            .await?,
        )?;
        ClusterInfo::decode(&response.body)
    }

    /// GET_ALL_TOPIC_LIST_FROM_NAMESERVER.
    pub async fn get_all_topic_list(&self) -> Result<TopicList> {
        let request = RemotingCommand::request(RequestCode::GetAllTopicListFromNameserver, &());
        let response = expect_success(self.call(request).await?)?;
        body::from_json(&response.body)
    }

    /// UPDATE_AND_CREATE_TOPIC, sent to a broker.
    pub async fn create_topic(&self, header: &CreateTopicRequestHeader) -> Result<()> {
        let request = RemotingCommand::request(RequestCode::UpdateAndCreateTopic, header);
        expect_success(self.call(request).await?).map(drop)
    }

    /// SEND_MESSAGE_V2 with the short-name header, as the Java client sends by default.
    pub async fn send_message(
        &self,
        header: SendMessageRequestHeader,
        body: impl Into<Bytes>,
    ) -> Result<SendResult> {
        self.send_with_code(RequestCode::SendMessageV2, header, body.into())
            .await
    }

    /// SEND_BATCH_MESSAGE; `body` is a client batch body (see `message::encode_batch`).
    pub async fn send_batch(
        &self,
        header: SendMessageRequestHeader,
        body: impl Into<Bytes>,
    ) -> Result<SendResult> {
        self.send_with_code(RequestCode::SendBatchMessage, header, body.into())
            .await
    }

    async fn send_with_code(
        &self,
        code: RequestCode,
        header: SendMessageRequestHeader,
        body: Bytes,
    ) -> Result<SendResult> {
        let short = SendMessageRequestHeaderV2::from(header);
        let request = RemotingCommand::request(code, &short).with_body(body);
        let response = self.call(request).await?;
        match ResponseCode::from_i32(response.code) {
            Some(
                ResponseCode::Success
                | ResponseCode::FlushDiskTimeout
                | ResponseCode::SlaveNotAvailable
                | ResponseCode::FlushSlaveTimeout,
            ) => Ok(SendResult {
                code: response.code,
                header: response.decode_header()?,
            }),
            _ => Err(remote_error(response)),
        }
    }

    /// PULL_MESSAGE. The wait allows for the broker holding the request up to
    /// `suspend_timeout_millis` when the SUSPEND bit is set.
    pub async fn pull_message(&self, header: &PullMessageRequestHeader) -> Result<PullResult> {
        let hold = std::time::Duration::from_millis(header.suspend_timeout_millis.max(0) as u64);
        let request = RemotingCommand::request(RequestCode::PullMessage, header);
        let response = self.invoke(request, self.default_timeout() + hold).await?;
        let status = match ResponseCode::from_i32(response.code) {
            Some(ResponseCode::Success) => PullStatus::Found,
            Some(ResponseCode::PullNotFound) => PullStatus::NoNewMessage,
            Some(ResponseCode::PullRetryImmediately) => PullStatus::NoMatchedMessage,
            Some(ResponseCode::PullOffsetMoved) => PullStatus::OffsetIllegal,
            _ => return Err(remote_error(response)),
        };
        Ok(PullResult {
            status,
            header: response.decode_header()?,
            body: response.body,
        })
    }

    /// HEART_BEAT; returns the server's version (Java clients remember it as the broker version).
    pub async fn heartbeat(&self, data: &HeartbeatData) -> Result<i32> {
        let request =
            RemotingCommand::request(RequestCode::HeartBeat, &()).with_body(body::to_json(data));
        let response = expect_success(self.call(request).await?)?;
        Ok(response.version)
    }

    /// UNREGISTER_CLIENT.
    pub async fn unregister_client(&self, header: &UnregisterClientRequestHeader) -> Result<()> {
        let request = RemotingCommand::request(RequestCode::UnregisterClient, header);
        expect_success(self.call(request).await?).map(drop)
    }

    /// GET_CONSUMER_LIST_BY_GROUP.
    pub async fn get_consumer_list_by_group(&self, consumer_group: &str) -> Result<Vec<String>> {
        let header = GetConsumerListByGroupRequestHeader {
            consumer_group: consumer_group.to_owned(),
        };
        let request = RemotingCommand::request(RequestCode::GetConsumerListByGroup, &header);
        let response = expect_success(self.call(request).await?)?;
        let list: ConsumerListByGroupResponseBody = body::from_json(&response.body)?;
        Ok(list.consumer_id_list)
    }

    /// QUERY_CONSUMER_OFFSET; `None` when the broker has no offset (QUERY_NOT_FOUND).
    pub async fn query_consumer_offset(
        &self,
        header: &QueryConsumerOffsetRequestHeader,
    ) -> Result<Option<i64>> {
        let request = RemotingCommand::request(RequestCode::QueryConsumerOffset, header);
        let response = self.call(request).await?;
        if response.code == ResponseCode::QueryNotFound.as_i32() {
            return Ok(None);
        }
        let response = expect_success(response)?;
        Ok(Some(
            response
                .decode_header::<QueryConsumerOffsetResponseHeader>()?
                .offset,
        ))
    }

    /// UPDATE_CONSUMER_OFFSET, waiting for the answer.
    pub async fn update_consumer_offset(
        &self,
        header: &UpdateConsumerOffsetRequestHeader,
    ) -> Result<()> {
        let request = RemotingCommand::request(RequestCode::UpdateConsumerOffset, header);
        expect_success(self.call(request).await?).map(drop)
    }

    /// UPDATE_CONSUMER_OFFSET oneway, as the Java push consumer persists offsets.
    pub async fn update_consumer_offset_oneway(
        &self,
        header: &UpdateConsumerOffsetRequestHeader,
    ) -> Result<()> {
        self.invoke_oneway(RemotingCommand::request(
            RequestCode::UpdateConsumerOffset,
            header,
        ))
        .await
    }

    /// GET_MAX_OFFSET: the next index to be written in the queue.
    pub async fn get_max_offset(&self, topic: &str, queue_id: i32) -> Result<i64> {
        let header = GetMaxOffsetRequestHeader {
            topic: topic.to_owned(),
            queue_id,
            ..Default::default()
        };
        let request = RemotingCommand::request(RequestCode::GetMaxOffset, &header);
        let response = expect_success(self.call(request).await?)?;
        Ok(response
            .decode_header::<GetMaxOffsetResponseHeader>()?
            .offset)
    }

    /// GET_MIN_OFFSET.
    pub async fn get_min_offset(&self, topic: &str, queue_id: i32) -> Result<i64> {
        let header = GetMinOffsetRequestHeader {
            topic: topic.to_owned(),
            queue_id,
            broker_name: None,
        };
        let request = RemotingCommand::request(RequestCode::GetMinOffset, &header);
        let response = expect_success(self.call(request).await?)?;
        Ok(response
            .decode_header::<GetMinOffsetResponseHeader>()?
            .offset)
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP.
    pub async fn search_offset(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp: i64,
        boundary_type: BoundaryType,
    ) -> Result<i64> {
        let header = SearchOffsetRequestHeader {
            topic: topic.to_owned(),
            queue_id,
            timestamp,
            boundary_type: Some(boundary_type),
            broker_name: None,
        };
        let request = RemotingCommand::request(RequestCode::SearchOffsetByTimestamp, &header);
        let response = expect_success(self.call(request).await?)?;
        Ok(response
            .decode_header::<SearchOffsetResponseHeader>()?
            .offset)
    }
}
