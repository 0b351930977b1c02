/** Every command handler registers itself on import. */
import './help.js';
import './inventory.js';
import './jobs.js';
import './remove-stale-ports.js';
import './approvals.js';
import './audit.js';
import './pause.js';
import './patch-windows.js';
import './drain.js';
