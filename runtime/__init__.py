"""Starting and stopping the engine and its runtime (Ray, HAProxy, embedded stores); no core or edge code here."""
