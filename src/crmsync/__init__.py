"""crmsync: a CRM's accounts, contacts, events, products and pipelines into any dlt destination."""

from crmsync.source import CrmConnection, SyncOptions, crm_source, rest_api_source

__all__ = ["CrmConnection", "SyncOptions", "crm_source", "rest_api_source"]
