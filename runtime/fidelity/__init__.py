"""Fill fidelity: the paper matcher measured against the true queue, calibrated, and the profiles it yields.

A *fidelity session* (:func:`.session.run_session`) trades one policy with live orders on the local exchange —
true price-time priority, makers that learn from our trades — while the shadow execution (:mod:`actors.shadow`)
folds the very same log through the paper matcher, its fills kept out of the ledger. :mod:`.measure` reads such a
log into per-order outcomes, paper and true side by side (passive fill rate, time to first fill, queue position,
slippage, adverse selection, PnL); :mod:`.report` aggregates sessions with confidence intervals and draws paper
against true PnL; :mod:`.calibrate` re-folds the recorded sessions through the matcher under candidate settings
(the shadow machine is deterministic, so this needs no exchange) and picks the profile that errs least on training
sessions, reported on held-out ones. Profiles are named sets of paper settings (:mod:`config.profiles`).
"""
