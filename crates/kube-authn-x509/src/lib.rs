//! Client certificates and the authenticating proxy (work in progress).
