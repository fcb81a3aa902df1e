//! `rowgate install`: permission views, identity functions and the serving role (being written).
