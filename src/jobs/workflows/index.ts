/** Every workflow registers its jobs and cards on import. */
import './find-stale-ports.js';
import './inventory-view.js';
