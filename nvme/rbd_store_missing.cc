// Stands in for the rbd store when ferry is built without librbd/librados.
#include "nvme/block_queue.hh"

namespace ferry::nvme {

std::unique_ptr<block_store> make_rbd_store(const rbd_options& options) {
    throw std::runtime_error("rbd image " + options.pool + "/" + options.image +
                             ": this ferry was built without librbd (install librbd-dev and librados-dev, rebuild)");
}

}  // namespace ferry::nvme
