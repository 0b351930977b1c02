/** Every workflow registers its jobs and cards on import. */
import './find-stale-ports.js';
import './inventory-view.js';
import './remove-stale-ports.js';
import './patch-windows.js';
import './drain.js';
import './restore.js';
import './migrate.js';
