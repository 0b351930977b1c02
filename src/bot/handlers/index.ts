/** Every command handler registers itself on import. */
import './help.js';
import './inventory.js';
import './jobs.js';
