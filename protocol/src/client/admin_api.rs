//! Typed admin calls, as mqadmin makes them: topic and consume statistics, connections,
//! subscription groups, offset resets, message queries, broker runtime info, a broker's or
//! name server's run-time config, and the name server's write-perm switch. Each sends to the
//! address this client is connected to; callers find brokers through the name server's
//! cluster info or a topic route.

use bytes::Bytes;

use super::api::{expect_success, remote_error};
use super::Client;
use crate::body::admin::{
    AclInfo, ConsumeStats, ConsumeStatsList, ConsumerConnection, ConsumerOffsetWrapper,
    DelayOffsetWrapper, GroupList, ResetOffsetBody, SubscriptionGroupWrapper, TopicStatsTable,
    UserInfo,
};
use crate::body::{self, KvTable, SubscriptionGroupConfig, TopicConfigSerializeWrapper};
use crate::code::{RequestCode, ResponseCode};
use crate::command::RemotingCommand;
use crate::error::Result;
use crate::header::{
    AclRequestHeader, AddWritePermOfBrokerResponseHeader, DeleteAclRequestHeader,
    DeleteSubscriptionGroupRequestHeader, DeleteTopicFromNamesrvRequestHeader,
    DeleteTopicRequestHeader, GetConsumeStatsInBrokerHeader, GetConsumeStatsRequestHeader,
    GetConsumerConnectionListRequestHeader, ListAclsRequestHeader, ListUsersRequestHeader,
    QueryMessageRequestHeader, ResetOffsetRequestHeader, TopicRequestHeader,
    TransferLeaderRequestHeader, TransferLeaderResponseHeader, UserRequestHeader,
    ViewMessageRequestHeader, WipeWritePermOfBrokerResponseHeader, WritePermOfBrokerRequestHeader,
};

impl Client {
    async fn admin_call(&self, request: RemotingCommand) -> Result<RemotingCommand> {
        expect_success(self.invoke(request, self.default_timeout()).await?)
    }

    /// DELETE_TOPIC_IN_BROKER.
    pub async fn delete_topic_in_broker(&self, topic: &str) -> Result<()> {
        let header = DeleteTopicRequestHeader {
            topic: topic.to_owned(),
        };
        let request = RemotingCommand::request(RequestCode::DeleteTopicInBroker, &header);
        self.admin_call(request).await.map(drop)
    }

    /// DELETE_TOPIC_IN_NAMESRV, sent to a name server.
    pub async fn delete_topic_in_namesrv(&self, topic: &str) -> Result<()> {
        let header = DeleteTopicFromNamesrvRequestHeader {
            topic: topic.to_owned(),
            cluster_name: None,
        };
        let request = RemotingCommand::request(RequestCode::DeleteTopicInNamesrv, &header);
        self.admin_call(request).await.map(drop)
    }

    /// GET_ALL_TOPIC_CONFIG (one page; Rocketry answers everything at once).
    pub async fn get_all_topic_config(&self) -> Result<TopicConfigSerializeWrapper> {
        let request = RemotingCommand::request(RequestCode::GetAllTopicConfig, &());
        body::from_json(&self.admin_call(request).await?.body)
    }

    /// GET_TOPIC_STATS_INFO: min and max offset of each queue.
    pub async fn get_topic_stats(&self, topic: &str) -> Result<TopicStatsTable> {
        let header = TopicRequestHeader {
            topic: topic.to_owned(),
        };
        let request = RemotingCommand::request(RequestCode::GetTopicStatsInfo, &header);
        body::from_json(&self.admin_call(request).await?.body)
    }

    /// QUERY_TOPIC_CONSUME_BY_WHO: the groups that subscribe to `topic` online or have
    /// offsets on it.
    pub async fn query_topic_consume_by_who(&self, topic: &str) -> Result<GroupList> {
        let header = TopicRequestHeader {
            topic: topic.to_owned(),
        };
        let request = RemotingCommand::request(RequestCode::QueryTopicConsumeByWho, &header);
        body::from_json(&self.admin_call(request).await?.body)
    }

    /// GET_CONSUME_STATS: broker and consumer offset of each queue the group consumes.
    pub async fn get_consume_stats(
        &self,
        group: &str,
        topic: Option<&str>,
    ) -> Result<ConsumeStats> {
        let header = GetConsumeStatsRequestHeader {
            consumer_group: group.to_owned(),
            topic: topic.map(str::to_owned),
            topic_list: None,
        };
        let request = RemotingCommand::request(RequestCode::GetConsumeStats, &header);
        body::from_json(&self.admin_call(request).await?.body)
    }

    /// GET_CONSUMER_CONNECTION_LIST. A group with no client online is
    /// `Error::Remote { code: 206, .. }` (CONSUMER_NOT_ONLINE).
    pub async fn get_consumer_connections(&self, group: &str) -> Result<ConsumerConnection> {
        let header = GetConsumerConnectionListRequestHeader {
            consumer_group: group.to_owned(),
        };
        let request = RemotingCommand::request(RequestCode::GetConsumerConnectionList, &header);
        body::from_json(&self.admin_call(request).await?.body)
    }

    /// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP.
    pub async fn create_subscription_group(&self, config: &SubscriptionGroupConfig) -> Result<()> {
        let request = RemotingCommand::request(RequestCode::UpdateAndCreateSubscriptiongroup, &())
            .with_body(body::to_json(config));
        self.admin_call(request).await.map(drop)
    }

    /// GET_ALL_CONSUMER_OFFSET: every committed offset the broker holds.
    pub async fn get_all_consumer_offset(&self) -> Result<ConsumerOffsetWrapper> {
        let request = RemotingCommand::request(RequestCode::GetAllConsumerOffset, &());
        body::from_json(&self.admin_call(request).await?.body)
    }

    /// GET_ALL_DELAY_OFFSET: how far each delay level has delivered.
    pub async fn get_all_delay_offset(&self) -> Result<DelayOffsetWrapper> {
        let request = RemotingCommand::request(RequestCode::GetAllDelayOffset, &());
        body::from_json(&self.admin_call(request).await?.body)
    }

    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG.
    pub async fn get_all_subscription_groups(&self) -> Result<SubscriptionGroupWrapper> {
        let request = RemotingCommand::request(RequestCode::GetAllSubscriptiongroupConfig, &());
        body::from_json(&self.admin_call(request).await?.body)
    }

    /// DELETE_SUBSCRIPTIONGROUP; `clean_offset` also drops the group's committed offsets.
    pub async fn delete_subscription_group(&self, group: &str, clean_offset: bool) -> Result<()> {
        let header = DeleteSubscriptionGroupRequestHeader {
            group_name: group.to_owned(),
            clean_offset: Some(clean_offset),
        };
        let request = RemotingCommand::request(RequestCode::DeleteSubscriptiongroup, &header);
        self.admin_call(request).await.map(drop)
    }

    /// INVOKE_BROKER_TO_RESET_OFFSET: moves the group's offsets on `topic` to the first
    /// message stored at or after `timestamp` (-1: the end). A group with no client online is
    /// `Error::Remote { code: 206, .. }`; mqadmin then sets each queue with
    /// UPDATE_CONSUMER_OFFSET instead.
    pub async fn reset_offset_by_time(
        &self,
        topic: &str,
        group: &str,
        timestamp: i64,
        force: bool,
    ) -> Result<ResetOffsetBody> {
        let header = ResetOffsetRequestHeader {
            topic: topic.to_owned(),
            group: group.to_owned(),
            timestamp,
            is_force: force,
            queue_id: None,
            offset: None,
        };
        let request = RemotingCommand::request(RequestCode::InvokeBrokerToResetOffset, &header);
        body::from_json(&self.admin_call(request).await?.body)
    }

    /// QUERY_MESSAGE by a `KEYS` token (or, with `unique`, by UNIQ_KEY): the stored records
    /// concatenated; empty when none matched (QUERY_NOT_FOUND).
    pub async fn query_message(
        &self,
        topic: &str,
        key: &str,
        max: i32,
        unique: bool,
    ) -> Result<Bytes> {
        let header = QueryMessageRequestHeader {
            topic: topic.to_owned(),
            key: key.to_owned(),
            max_num: max,
            begin_timestamp: 0,
            end_timestamp: i64::MAX,
            unique_key_query: Some(unique),
        };
        let request = RemotingCommand::request(RequestCode::QueryMessage, &header);
        let response = self.invoke(request, self.default_timeout()).await?;
        if response.code == ResponseCode::QueryNotFound.as_i32() {
            return Ok(Bytes::new());
        }
        Ok(expect_success(response)?.body)
    }

    /// VIEW_MESSAGE_BY_ID: the stored record at a CommitLog offset.
    pub async fn view_message(&self, commit_log_offset: i64) -> Result<Bytes> {
        let header = ViewMessageRequestHeader {
            offset: commit_log_offset,
            topic: None,
        };
        let request = RemotingCommand::request(RequestCode::ViewMessageById, &header);
        Ok(self.admin_call(request).await?.body)
    }

    /// GET_BROKER_RUNTIME_INFO.
    pub async fn get_broker_runtime_info(&self) -> Result<KvTable> {
        let request = RemotingCommand::request(RequestCode::GetBrokerRuntimeInfo, &());
        let response = self.invoke(request, self.default_timeout()).await?;
        if response.code != ResponseCode::Success.as_i32() {
            return Err(remote_error(response));
        }
        body::from_json(&response.body)
    }

    /// GET_BROKER_CONSUME_STATS: every group's offsets on every topic it consumes on this
    /// broker (`order` keeps ordered topics only).
    pub async fn get_broker_consume_stats(&self, order: bool) -> Result<ConsumeStatsList> {
        let header = GetConsumeStatsInBrokerHeader { is_order: order };
        let request = RemotingCommand::request(RequestCode::GetBrokerConsumeStats, &header);
        body::from_json(&self.admin_call(request).await?.body)
    }

    /// WIPE_WRITE_PERM_OF_BROKER, sent to a name server: clients stop sending to the broker
    /// group `broker_name` once they refresh its routes. Returns how many topics changed.
    pub async fn wipe_write_perm_of_broker(&self, broker_name: &str) -> Result<i32> {
        let header = WritePermOfBrokerRequestHeader {
            broker_name: broker_name.to_owned(),
        };
        let request = RemotingCommand::request(RequestCode::WipeWritePermOfBroker, &header);
        let answer: WipeWritePermOfBrokerResponseHeader =
            self.admin_call(request).await?.decode_header()?;
        Ok(answer.wipe_topic_count)
    }

    /// ADD_WRITE_PERM_OF_BROKER, sent to a name server: undoes a wipe. Returns how many
    /// topics changed.
    pub async fn add_write_perm_of_broker(&self, broker_name: &str) -> Result<i32> {
        let header = WritePermOfBrokerRequestHeader {
            broker_name: broker_name.to_owned(),
        };
        let request = RemotingCommand::request(RequestCode::AddWritePermOfBroker, &header);
        let answer: AddWritePermOfBrokerResponseHeader =
            self.admin_call(request).await?.decode_header()?;
        Ok(answer.add_topic_count)
    }

    /// GET_NAMESRV_CONFIG, sent to a name server: its settings as Java properties text.
    pub async fn get_namesrv_config(&self) -> Result<String> {
        let request = RemotingCommand::request(RequestCode::GetNamesrvConfig, &());
        let response = self.admin_call(request).await?;
        Ok(String::from_utf8_lossy(&response.body).into_owned())
    }

    /// UPDATE_NAMESRV_CONFIG, sent to a name server. A key it does not allow to change at
    /// run time is `Error::Remote { code: 16, .. }` (NO_PERMISSION) and nothing changes.
    pub async fn update_namesrv_config(&self, entries: &[(&str, &str)]) -> Result<()> {
        let request = RemotingCommand::request(RequestCode::UpdateNamesrvConfig, &())
            .with_body(properties_text(entries));
        self.admin_call(request).await.map(drop)
    }

    /// GET_BROKER_CONFIG, sent to a broker: its settings as Java properties text.
    pub async fn get_broker_config(&self) -> Result<String> {
        let request = RemotingCommand::request(RequestCode::GetBrokerConfig, &());
        let response = self.admin_call(request).await?;
        Ok(String::from_utf8_lossy(&response.body).into_owned())
    }

    /// UPDATE_BROKER_CONFIG, sent to a broker. A key it does not allow to change at run time
    /// is `Error::Remote { code: 16, .. }` (NO_PERMISSION) and nothing changes.
    pub async fn update_broker_config(&self, entries: &[(&str, &str)]) -> Result<()> {
        let request = RemotingCommand::request(RequestCode::UpdateBrokerConfig, &())
            .with_body(properties_text(entries));
        self.admin_call(request).await.map(drop)
    }

    /// ROCKETRY_TRANSFER_LEADER, sent to a replicated group's leader: hands leadership to
    /// replica `to` (`nX`), or to the follower furthest along, and answers once it leads,
    /// with the replica that does.
    pub async fn transfer_leader(&self, to: Option<&str>) -> Result<String> {
        let header = TransferLeaderRequestHeader {
            to: to.map(str::to_owned),
        };
        let request = RemotingCommand::request(RequestCode::RocketryTransferLeader, &header);
        // The answer waits for the new leader's election.
        let answer = expect_success(self.invoke(request, TRANSFER_LEADER_TIMEOUT).await?)?;
        let header: TransferLeaderResponseHeader = answer.decode_header()?;
        Ok(header.leader)
    }
}

/// Longer than a broker waits for a transfer to complete.
const TRANSFER_LEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

impl Client {
    /// AUTH_CREATE_USER, or AUTH_UPDATE_USER when `update`, sent to a broker.
    pub async fn put_user(&self, user: &UserInfo, update: bool) -> Result<()> {
        let code = if update {
            RequestCode::AuthUpdateUser
        } else {
            RequestCode::AuthCreateUser
        };
        let header = UserRequestHeader {
            username: user.username.clone(),
        };
        let request = RemotingCommand::request(code, &header).with_body(body::to_json(user));
        self.admin_call(request).await.map(drop)
    }

    /// AUTH_DELETE_USER, sent to a broker.
    pub async fn delete_user(&self, username: &str) -> Result<()> {
        let header = UserRequestHeader {
            username: username.into(),
        };
        let request = RemotingCommand::request(RequestCode::AuthDeleteUser, &header);
        self.admin_call(request).await.map(drop)
    }

    /// AUTH_CREATE_ACL, sent to a broker: each grant replaces the subject's on its resource.
    pub async fn put_acl(&self, acl: &AclInfo) -> Result<()> {
        let header = AclRequestHeader {
            subject: acl.subject.clone(),
        };
        let request = RemotingCommand::request(RequestCode::AuthCreateAcl, &header)
            .with_body(body::to_json(acl));
        self.admin_call(request).await.map(drop)
    }

    /// AUTH_DELETE_ACL, sent to a broker: the subject's grant on `resource`, or all.
    pub async fn delete_acl(&self, subject: &str, resource: Option<&str>) -> Result<()> {
        let header = DeleteAclRequestHeader {
            subject: subject.into(),
            policy_type: None,
            resource: resource.map(str::to_string),
        };
        let request = RemotingCommand::request(RequestCode::AuthDeleteAcl, &header);
        self.admin_call(request).await.map(drop)
    }

    /// AUTH_LIST_ACL, sent to a broker: every subject's grants.
    pub async fn list_acls(&self) -> Result<Vec<AclInfo>> {
        let header = ListAclsRequestHeader::default();
        let request = RemotingCommand::request(RequestCode::AuthListAcl, &header);
        let response = self.admin_call(request).await?;
        body::from_json(&response.body)
    }

    /// AUTH_LIST_USER, sent to a broker: its users (never their secrets).
    pub async fn list_users(&self, filter: Option<&str>) -> Result<Vec<UserInfo>> {
        let header = ListUsersRequestHeader {
            filter: filter.map(str::to_string),
        };
        let request = RemotingCommand::request(RequestCode::AuthListUser, &header);
        let response = self.admin_call(request).await?;
        body::from_json(&response.body)
    }
}

/// `key=value` lines, as Java's `MixAll.properties2String` writes a config update.
fn properties_text(entries: &[(&str, &str)]) -> Vec<u8> {
    entries
        .iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect::<String>()
        .into_bytes()
}
