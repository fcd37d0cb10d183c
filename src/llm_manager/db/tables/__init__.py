"""ORM tables, one module per domain. Importing this package registers every table on `Base`."""

from llm_manager.db.tables.accounts import (
    ActivityEntry,
    LoginFailure,
    Role,
    RolePermission,
    User,
    UserRole,
    WebSession,
)
from llm_manager.db.tables.applications import Application
from llm_manager.db.tables.budgets import Budget, BudgetEvent, BudgetLease, BudgetWindow
from llm_manager.db.tables.configurations import ConfigurationFallback, LLMConfiguration, ProviderModelCache
from llm_manager.db.tables.conversations import Conversation, ConversationMessage
from llm_manager.db.tables.latency import UsageLatencyDaily
from llm_manager.db.tables.metrics import CustomMetric
from llm_manager.db.tables.secrets import EncryptionKey
from llm_manager.db.tables.templates import PromptTemplate, PromptTemplateLabel, PromptTemplateVersion
from llm_manager.db.tables.tokens import ApiToken
from llm_manager.db.tables.usage import USAGE_DAILY_COUNTERS, USAGE_DAILY_KEY, UsageDaily, UsageLog

__all__ = [
    "USAGE_DAILY_COUNTERS",
    "USAGE_DAILY_KEY",
    "ActivityEntry",
    "ApiToken",
    "Application",
    "Budget",
    "BudgetEvent",
    "BudgetLease",
    "BudgetWindow",
    "ConfigurationFallback",
    "Conversation",
    "ConversationMessage",
    "CustomMetric",
    "EncryptionKey",
    "LLMConfiguration",
    "LoginFailure",
    "PromptTemplate",
    "PromptTemplateLabel",
    "PromptTemplateVersion",
    "ProviderModelCache",
    "Role",
    "RolePermission",
    "UsageDaily",
    "UsageLatencyDaily",
    "UsageLog",
    "User",
    "UserRole",
    "WebSession",
]
