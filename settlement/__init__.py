"""Settlement on a Solana chain: the embedded LiteSVM chain (:mod:`settlement.embedded`), the JSON-RPC
chain (:mod:`settlement.rpc`), the swap transaction (:mod:`settlement.swap_tx`), its assembly and signing
(:mod:`settlement.assembler`) and the keys (:mod:`settlement.keys`). The protocol itself is pure and
lives in :mod:`engine.settlement`."""
