//! The language runtimes guard asks what holds the memory: each lives in a folder of its own
//! with the hook files it puts in the job (`python/`: the heap census and its sitecustomize).
//! A runtime recognises its processes, adds its hook to the job's environment at start, and
//! answers guard's census over the socket the census owns.
pub mod python;
